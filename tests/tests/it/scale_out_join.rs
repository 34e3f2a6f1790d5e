//! The scale-out lab's node join (docs/scale-out.md): long-lived TCP
//! connections open while only nodes 1 and 2 announce the VIP; node 3's
//! lb-user then starts and announces it, and ECMP moves some of those flows
//! to node 3, which has no conntrack entry for them. Maglev sends each to
//! the backend it already had (any other backend has no socket for it and
//! would reset it), so every connection keeps answering.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_user::stats::Report;
use xdplb_tests::{
    lab::{
        scale_out::{plan, routes, NodeSpec, ScaleOut},
        Host,
    },
    netns, require_root,
};

use crate::scale_out_echo::{round, Conn};

const VIP: &str = "198.18.100.10";
const CONNECTIONS: usize = 120;
/// A node's route leaves the router within its grace period; this only
/// bounds the poll after its lb-user has exited.
const GONE_BOUND: Duration = Duration::from_secs(3);
/// Attach, one health check pass, BIRD's export and the router's BGP
/// update, with slack for a shared 2-core machine.
const JOIN_BOUND: Duration = Duration::from_secs(10);

fn new_flows(lab: &ScaleOut, i: u8) -> u64 {
    let report = Report::read_pinned(&lab.node_iface(i)).unwrap();
    report.vips.iter().map(|(_, c)| c.new_flows).sum()
}

#[test]
fn flows_that_ecmp_moves_to_a_joining_lb_node_keep_their_backends() {
    require_root!();
    let start = Instant::now();
    let vip_ip: IpAddr = VIP.parse().unwrap();
    let spec = NodeSpec::echo(vip_ip);
    let vip = SocketAddr::new(vip_ip, spec.echo_port);
    let mut lab = ScaleOut::up_unique("xj", 3, 3, &spec).unwrap();
    let router = lab.router_ns();
    let client = lab.lab().ns(Host::Client);
    // Node 3 out of the group before any connection exists.
    lab.stop_node_gracefully(3).unwrap();
    routes::wait_next_hops(&router, vip_ip, &[plan::node_v4(1), plan::node_v4(2)], GONE_BOUND).unwrap();

    let opened = client.clone();
    let mut conns = netns::run_in(&opened, move || {
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            conns.push(Conn::open(vip)?);
        }
        let answered = round(&mut conns, 1, Duration::from_secs(5));
        anyhow::ensure!(answered == CONNECTIONS, "{answered}/{CONNECTIONS} connections answered before the join");
        Ok(conns)
    })
    .unwrap();
    let before: Vec<u64> = (1..=2).map(|i| new_flows(&lab, i)).collect();
    assert_eq!(before.iter().sum::<u64>(), CONNECTIONS as u64, "every connection is one new flow on node 1 or 2: {before:?}");

    let joining = Instant::now();
    lab.start_node(3).unwrap();
    let all: Vec<_> = (1..=3).map(plan::node_v4).collect();
    routes::wait_next_hops(&router, vip_ip, &all, JOIN_BOUND).unwrap();
    let joined = joining.elapsed();

    let (conns_back, answered) = netns::run_in(&client, move || {
        let answered = round(&mut conns, 2, Duration::from_secs(5));
        Ok((conns, answered))
    })
    .unwrap();
    // Node 3's lb-user is new: every flow it has seen is one ECMP moved there.
    let moved = new_flows(&lab, 3);
    println!(
        "new flows on nodes 1 and 2 before the join {before:?}; node 3 in the router's route {joined:?} after its lb-user started; \
         {moved} connections moved to node 3; {answered}/{CONNECTIONS} answered after the join; test {:?}",
        start.elapsed()
    );
    drop(conns_back);
    assert!(moved > 0, "ECMP over three next hops moves some of the flows to the joining node");
    assert_eq!(answered, CONNECTIONS, "every connection keeps its backend after the join");
}
