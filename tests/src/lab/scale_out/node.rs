//! One LB node of the scale-out lab: its namespace and link into the
//! fabric bridge, and its lb-user (one-armed DSR, `group:` hand-off); plus
//! the router's sysctls.

use std::{net::IpAddr, time::Duration};

use anyhow::Result;

use super::plan;
use crate::{
    lab::{
        addr, build,
        config::{ConfigFile, LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    sys::ip,
};

/// What every node serves: one DSR VIP on the lab's backends, with the same
/// Maglev size and seed everywhere (so every node picks the same backend
/// for a flow).
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub vip: IpAddr,
    /// The backends' REQ/ACK echo port on the VIP (long-lived connections).
    pub echo_port: u16,
    /// An HTTP port on the VIP too, if any.
    pub http_port: Option<u16>,
    /// lb-user `health_check` flow mapping for the echo VIP (None: no check).
    pub health_check: Option<String>,
    /// lb-user `group.grace`.
    pub grace: Duration,
}

impl NodeSpec {
    /// The echo VIP on port 9000 with a fast TCP health check.
    pub fn echo(vip: IpAddr) -> NodeSpec {
        NodeSpec {
            vip,
            echo_port: 9000,
            http_port: None,
            health_check: Some("{ type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2 }".into()),
            grace: Duration::from_secs(1),
        }
    }
}

/// ECMP in the router hashes the 5-tuple, so one client's flows spread over
/// the nodes.
pub(super) fn router_sysctls(ns: &str) -> Result<()> {
    build::sysctl(ns, "net/ipv4/fib_multipath_hash_policy", "1")?;
    build::sysctl(ns, "net/ipv6/fib_multipath_hash_policy", "1")
}

/// Creates node `i`'s namespace with one link into the fabric bridge.
pub(super) fn build(lab: &str, i: u8) -> Result<()> {
    let ns = crate::lab::ns_name(lab, Host::Node(i));
    ip(&["netns", "add", &ns])?;
    for (key, value) in build::QUIET_IPV6 {
        build::sysctl(&ns, key, value)?;
    }
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    // DSR without a configured MAC resolves the backend with
    // bpf_fib_lookup, which refuses (FWD_DISABLED) on a device without
    // forwarding. The node has no route for the VIPs, so the kernel itself
    // forwards nothing of theirs.
    build::sysctl(&ns, "net/ipv4/ip_forward", "1")?;
    let (dev, port) = (plan::node_iface(lab, i), plan::switch_node_iface(lab, i));
    let sw = crate::lab::ns_name(lab, Host::Switch);
    build::veth(&ns, &dev, &sw, &port)?;
    ip(&["-n", &sw, "link", "set", &port, "master", &format!("{lab}-br")])?;
    ip(&["-n", &ns, "addr", "add", &format!("{}/{}", plan::node_v4(i), addr::SEGMENT_PREFIX_V4), "dev", &dev])?;
    // BGP and BFD leave from here; an XDP_TX'd frame carries whatever
    // checksum state it arrived with, so none of the node's own may be partial.
    build::ethtool(&ns, &dev, &["tx", "off"])
}

/// Starts lb-user on node `i`: generic-mode XDP (`attach_mode: skb`), since
/// XDP_TX in native mode on a veth reaches the peer only while the peer
/// (a bridge port here) runs an XDP program too.
/// Returns the config file with it: lb-user may re-read it, so it lives as
/// long as the process.
pub(super) fn attach(lab: &Lab, i: u8, spec: &NodeSpec) -> Result<(LbUser, ConfigFile)> {
    let iface = plan::node_iface(lab.name(), i);
    let mut vip = Vip::new("echo", spec.vip, spec.echo_port).forwarding("dsr").backends(1..=lab.backend_count(), spec.echo_port, false);
    if let Some(check) = &spec.health_check {
        vip = vip.health_check(check);
    }
    let mut config = LbConfig::one_armed(&iface)
        .maglev(251, Some(7))
        .extra("attach_mode: skb")
        .extra(&format!("group: {{ node: node{i}, table: {}, grace: {}ms }}", plan::HANDOFF_TABLE, spec.grace.as_millis()))
        .vip(vip);
    if let Some(port) = spec.http_port {
        config = config.vip(Vip::new("http", spec.vip, port).forwarding("dsr").backends(1..=lab.backend_count(), port, false));
    }
    let file = config.write()?;
    let lb = LbUser::attach_config(&lab.ns(Host::Node(i)), &iface, file.path())?;
    Ok((lb, file))
}
