//! The rtnetlink requests of the BGP hand-off (`crate::announce`): host
//! routes in one dedicated routing table, marked with lb-user's own route
//! protocol so they are told apart from anything else in it, listed, added
//! and removed.

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::{Context as _, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::{
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType},
    RouteNetlinkMessage,
};

use super::{family, is_errno, Rtnl};

/// The route protocol lb-user marks its hand-off routes with (`proto 250`
/// in `ip route`): numbers above `RTPROT_STATIC` mean nothing to the kernel,
/// and 250 is not registered to any routing daemon, so BIRD (`learn`) and
/// FRR see them as routes of someone else, and lb-user recognises its own
/// after a restart.
pub const RTPROT_XDPLB: u8 = 250;

impl Rtnl {
    /// The addresses lb-user has a host route for in `table`.
    pub fn table_routes(&mut self, table: u32) -> Result<BTreeSet<IpAddr>> {
        let replies = self
            .request(RouteNetlinkMessage::GetRoute(RouteMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)
            .with_context(|| format!("reading routing table {table}"))?;
        let mut out = BTreeSet::new();
        for reply in replies {
            let RouteNetlinkMessage::NewRoute(route) = reply else { continue };
            if route.header.protocol != RouteProtocol::Other(RTPROT_XDPLB) || route_table(&route) != table {
                continue;
            }
            let full = route.header.destination_prefix_length;
            for attribute in &route.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) if full == 32 => {
                        out.insert(IpAddr::V4(*a));
                    }
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) if full == 128 => {
                        out.insert(IpAddr::V6(*a));
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Adds the host route for `addr` to `table`; one already there is not
    /// an error.
    pub fn add_table_route(&mut self, table: u32, addr: IpAddr) -> Result<()> {
        match self.request(RouteNetlinkMessage::NewRoute(host_route(table, addr)), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(()),
            Err(err) if is_errno(&err, libc::EEXIST) => Ok(()),
            Err(err) => Err(err.context(format!("adding the route for {addr} to routing table {table}"))),
        }
    }

    /// Removes the host route for `addr` from `table`; one already gone is
    /// not an error.
    pub fn delete_table_route(&mut self, table: u32, addr: IpAddr) -> Result<()> {
        match self.request(RouteNetlinkMessage::DelRoute(host_route(table, addr)), NLM_F_REQUEST | NLM_F_ACK) {
            Ok(_) => Ok(()),
            Err(err) if is_errno(&err, libc::ESRCH) || is_errno(&err, libc::ENOENT) => Ok(()),
            Err(err) => Err(err.context(format!("removing the route for {addr} from routing table {table}"))),
        }
    }
}

/// The table a route is in: the `RTA_TABLE` attribute (tables above 255
/// exist only there), else the header's byte.
fn route_table(route: &RouteMessage) -> u32 {
    route.attributes.iter().find_map(|a| if let RouteAttribute::Table(t) = a { Some(*t) } else { None }).unwrap_or(u32::from(route.header.table))
}

/// `blackhole ADDR/32 table TABLE proto 250`: the route only carries the
/// prefix to the routing daemon (no `ip rule` looks this table up), so it
/// names no interface or gateway and does not depend on any link.
fn host_route(table: u32, addr: IpAddr) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(addr);
    msg.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
    msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.header.protocol = RouteProtocol::Other(RTPROT_XDPLB);
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::BlackHole;
    msg.attributes.push(RouteAttribute::Destination(RouteAddress::from(addr)));
    msg.attributes.push(RouteAttribute::Table(table));
    msg
}
