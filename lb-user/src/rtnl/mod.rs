//! lb-user's one route netlink client: a socket of the current network
//! namespace and the request/reply loop, with the requests each user needs
//! in a file of its own — DSR next hops (`neighbour.rs`, for
//! `crate::neighbours`) and the routes of the BGP hand-off table
//! (`table.rs`, for `crate::announce`). Messages are built and parsed by
//! `netlink-packet-route`; this module only sends them and collects the
//! replies.

mod neighbour;
mod table;

use std::net::IpAddr;

use anyhow::{Context as _, Result};
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub use self::{
    neighbour::{Neighbour, NextHop},
    table::RTPROT_XDPLB,
};

/// A route netlink socket of the current network namespace.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening a route netlink socket")?;
        socket.bind_auto().context("binding the route netlink socket")?;
        socket.connect(&SocketAddr::new(0, 0)).context("connecting the route netlink socket")?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends one request and collects its replies: until the ACK (or the
    /// first reply, for a plain get) or, for a dump, until DONE. A netlink
    /// error comes back as an `io::Error` with the kernel's errno.
    fn request(&mut self, payload: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let mut buf = vec![0; msg.header.length as usize];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let (dump, ack) = (flags & NLM_F_DUMP == NLM_F_DUMP, flags & NLM_F_ACK != 0);
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..]).context("parsing a netlink reply")?;
                let length = reply.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io().into()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if !dump && !ack {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Whether an rtnetlink error is the kernel's `errno`.
fn is_errno(err: &anyhow::Error, errno: i32) -> bool {
    err.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error) == Some(errno)
}
