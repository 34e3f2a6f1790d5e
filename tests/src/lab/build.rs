//! Creating a lab's namespaces, links, addresses and routes with iproute2.

use anyhow::{Context as _, Result};

use super::{addr, Host, Lab};
use crate::sys::{self, ip};

/// Sysctls set in every namespace before its interfaces exist, so new
/// interfaces inherit them: no DAD delay and no router solicitations, which
/// keeps the links quiet enough for exact counter assertions.
pub(super) const QUIET_IPV6: &[(&str, &str)] =
    &[("net/ipv6/conf/default/accept_dad", "0"), ("net/ipv6/conf/default/router_solicitations", "0"), ("net/ipv6/conf/default/accept_ra", "0")];

pub(super) fn build(lab: &Lab) -> Result<()> {
    let name = lab.name();
    let mut hosts = vec![Host::Client, Host::Lb, Host::Switch];
    hosts.extend((1..=lab.backend_count()).map(Host::Backend));
    for host in &hosts {
        let ns = lab.ns(*host);
        ip(&["netns", "add", &ns])?;
        for (key, value) in QUIET_IPV6 {
            sysctl(&ns, key, value)?;
        }
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    let (client, lb, sw) = (lab.ns(Host::Client), lab.ns(Host::Lb), lab.ns(Host::Switch));
    sysctl(&lb, "net/ipv4/ip_forward", "1")?;
    // Replies from DSR backends carry the VIP as source, which the lb has no
    // route back to; strict reverse-path filtering would drop them.
    sysctl(&lb, "net/ipv4/conf/all/rp_filter", "0")?;
    sysctl(&lb, "net/ipv4/conf/default/rp_filter", "0")?;
    sysctl(&lb, "net/ipv6/conf/all/forwarding", "1")?;
    // The switch only bridges frames; it has no addresses of its own.
    sysctl(&sw, "net/ipv6/conf/default/disable_ipv6", "1")?;
    sysctl(&sw, "net/ipv6/conf/all/disable_ipv6", "1")?;

    // client <-> lb
    let (client_if, lb_client_if, lb_backend_if) = (lab.client_iface(), lab.lb_client_iface(), lab.lb_backend_iface());
    veth(&client, &client_if, &lb, &lb_client_if)?;
    // lb <-> bridge <-> backends
    let bridge = format!("{name}-br");
    ip(&["-n", &sw, "link", "add", &bridge, "type", "bridge"])?;
    ip(&["-n", &sw, "link", "set", &bridge, "up"])?;
    let sw_lb = super::switch_lb_iface(name);
    veth(&lb, &lb_backend_if, &sw, &sw_lb)?;
    ip(&["-n", &sw, "link", "set", &sw_lb, "master", &bridge])?;
    for i in 1..=lab.backend_count() {
        let be = lab.ns(Host::Backend(i));
        let port = format!("{name}-s{i}");
        veth(&be, &lab.backend_iface(i), &sw, &port)?;
        ip(&["-n", &sw, "link", "set", &port, "master", &bridge])?;
    }

    // Addresses.
    add_addrs(&client, &client_if, &addr::CLIENT_V4.to_string(), &addr::CLIENT_V6.to_string())?;
    add_addrs(&lb, &lb_client_if, &addr::LB_CLIENT_V4.to_string(), &addr::LB_CLIENT_V6.to_string())?;
    add_addrs(&lb, &lb_backend_if, &addr::LB_BACKEND_V4.to_string(), &addr::LB_BACKEND_V6.to_string())?;
    for i in 1..=lab.backend_count() {
        let be = lab.ns(Host::Backend(i));
        add_addrs(&be, &lab.backend_iface(i), &addr::backend_v4(i).to_string(), &addr::backend_v6(i).to_string())?;
    }

    // Routes: the client and the backends reach the rest of the lab through the
    // lb, so backend replies to clients return through it (IPVS-NAT style).
    route(&client, addr::LAB_NET_V4, &addr::LB_CLIENT_V4.to_string())?;
    route(&client, addr::LAB_NET_V6, &addr::LB_CLIENT_V6.to_string())?;
    for i in 1..=lab.backend_count() {
        let be = lab.ns(Host::Backend(i));
        route(&be, addr::LAB_NET_V4, &addr::LB_BACKEND_V4.to_string())?;
        route(&be, addr::LAB_NET_V6, &addr::LB_BACKEND_V6.to_string())?;
    }

    // Static neighbours on the client segment: no ARP/NDP on the link the XDP
    // program watches, so its counters see only the traffic a test sends.
    let client_mac = mac(&client, &client_if)?;
    let lb_mac = mac(&lb, &lb_client_if)?;
    for (ns, dev, peer_ip, peer_mac) in [
        (&client, &client_if, addr::LB_CLIENT_V4.to_string(), &lb_mac),
        (&client, &client_if, addr::LB_CLIENT_V6.to_string(), &lb_mac),
        (&lb, &lb_client_if, addr::CLIENT_V4.to_string(), &client_mac),
        (&lb, &lb_client_if, addr::CLIENT_V6.to_string(), &client_mac),
    ] {
        ip(&["-n", ns, "neigh", "replace", &peer_ip, "lladdr", peer_mac, "dev", dev, "nud", "permanent"])?;
    }

    // Static neighbours on the backend segment too: the lb's FIB lookups in
    // XDP resolve at once (no NO_NEIGH fallback on the first packets) and
    // backends never ARP for the lb.
    let lb_backend_mac = mac(&lb, &lb_backend_if)?;
    for i in 1..=lab.backend_count() {
        let (be, be_if) = (lab.ns(Host::Backend(i)), lab.backend_iface(i));
        let be_mac = mac(&be, &be_if)?;
        for (peer, peer_mac, ns, dev) in [
            (addr::backend_v4(i).to_string(), &be_mac, &lb, &lb_backend_if),
            (addr::backend_v6(i).to_string(), &be_mac, &lb, &lb_backend_if),
            (addr::LB_BACKEND_V4.to_string(), &lb_backend_mac, &be, &be_if),
            (addr::LB_BACKEND_V6.to_string(), &lb_backend_mac, &be, &be_if),
        ] {
            ip(&["-n", ns, "neigh", "replace", &peer, "lladdr", peer_mac, "dev", dev, "nud", "permanent"])?;
        }
    }

    // Senders in namespaces hand out CHECKSUM_PARTIAL packets; once XDP
    // forwards them (XDP_TX/REDIRECT) nobody fills the checksum in. Turn TX
    // checksum offload off where traffic originates (see design.md).
    ethtool_tx_off(&client, &client_if)?;
    for i in 1..=lab.backend_count() {
        ethtool_tx_off(&lab.ns(Host::Backend(i)), &lab.backend_iface(i))?;
    }
    // Frames the lb XDP_REDIRECTs into a veth are only delivered when the
    // peer has GRO (NAPI) or an XDP program: enable GRO on both peers.
    ethtool(&client, &client_if, &["gro", "on"])?;
    ethtool(&sw, &sw_lb, &["gro", "on"])?;
    Ok(())
}

pub(super) fn ethtool(ns: &str, dev: &str, settings: &[&str]) -> Result<()> {
    let mut args = vec!["netns", "exec", ns, "ethtool", "-K", dev];
    args.extend_from_slice(settings);
    sys::run("ip", &args).map(|_| ())
}

pub(super) fn veth(ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) -> Result<()> {
    ip(&["-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])?;
    ip(&["-n", ns_a, "link", "set", if_a, "up"])?;
    ip(&["-n", ns_b, "link", "set", if_b, "up"])
}

fn add_addrs(ns: &str, dev: &str, v4: &str, v6: &str) -> Result<()> {
    ip(&["-n", ns, "addr", "add", &format!("{v4}/{}", addr::SEGMENT_PREFIX_V4), "dev", dev])?;
    ip(&["-n", ns, "-6", "addr", "add", &format!("{v6}/{}", addr::SEGMENT_PREFIX_V6), "dev", dev, "nodad"])
}

fn route(ns: &str, net: &str, via: &str) -> Result<()> {
    ip(&["-n", ns, "route", "add", net, "via", via])
}

/// Writes a sysctl inside namespace `ns` (/proc/sys/net is per namespace).
pub(super) fn sysctl(ns: &str, key: &'static str, value: &'static str) -> Result<()> {
    crate::netns::run_in(ns, move || {
        let path = format!("/proc/sys/{key}");
        std::fs::write(&path, value).with_context(|| format!("writing {value} to {path}"))
    })
    .with_context(|| format!("sysctl in {ns}"))
}

pub(super) fn mac(ns: &str, dev: &str) -> Result<String> {
    let json = sys::run_stdout("ip", &["-n", ns, "-j", "link", "show", dev])?;
    let value: serde_json::Value = serde_json::from_str(&json).context("parsing `ip -j link` output")?;
    value[0]["address"].as_str().map(str::to_owned).with_context(|| format!("no MAC address for {dev} in {ns}"))
}

pub(super) fn ifindex(ns: &str, dev: &str) -> Result<u32> {
    let json = sys::run_stdout("ip", &["-n", ns, "-j", "link", "show", dev])?;
    let value: serde_json::Value = serde_json::from_str(&json).context("parsing `ip -j link` output")?;
    value[0]["ifindex"].as_u64().map(|i| i as u32).with_context(|| format!("no ifindex for {dev} in {ns}"))
}

fn ethtool_tx_off(ns: &str, dev: &str) -> Result<()> {
    ethtool(ns, dev, &["tx", "off"])
}
