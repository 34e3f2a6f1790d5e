//! The scale-out lab (docs/scale-out.md): three LB nodes behind the
//! router's ECMP route, long-lived TCP connections spread over all three,
//! one node lost abruptly (link gone, processes SIGKILLed). BFD removes it
//! from the router's route; the flows ECMP moves to the other nodes keep
//! their backends (same Maglev table everywhere, no conntrack needed), so
//! the connections survive.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_common::Stat;
use lb_user::stats::Report;
use xdplb_tests::{
    lab::{
        scale_out::{plan, NodeSpec, ScaleOut},
        Host,
    },
    netns, require_root,
};

use crate::scale_out_echo::{round, Conn};

const VIP: &str = "198.18.100.7";
const CONNECTIONS: usize = 240;
/// BFD's 500 ms detection, BIRD's route update, and slack for a shared
/// 2-core machine.
const ROUTE_BOUND: Duration = Duration::from_secs(3);

/// Node `i`'s XDP counters so far: (new flows on the VIP, DSR packets).
fn forwarded(lab: &ScaleOut, i: u8) -> (u64, u64) {
    let report = Report::read_pinned(&lab.node_iface(i)).unwrap();
    (report.vips.iter().map(|(_, c)| c.new_flows).sum(), report.action(Stat::ForwardDsr).packets)
}

#[test]
fn connections_survive_the_loss_of_one_of_three_lb_nodes() {
    require_root!();
    let start = Instant::now();
    let vip_ip: IpAddr = VIP.parse().unwrap();
    let spec = NodeSpec::echo(vip_ip);
    let vip = SocketAddr::new(vip_ip, spec.echo_port);
    let mut lab = ScaleOut::up_unique("xs", 3, 3, &spec).unwrap();
    let up = start.elapsed();
    println!("router routes:\n{}", lab.router_routes().unwrap());
    let client = lab.lab().ns(Host::Client);

    // Long-lived connections from many source ports, in the client's
    // namespace (sockets keep the namespace they were made in).
    let (mut conns, opened) = netns::run_in(&client, move || {
        let mut conns = Vec::with_capacity(CONNECTIONS);
        let mut failed = 0;
        for _ in 0..CONNECTIONS {
            match Conn::open(vip) {
                Ok(c) => conns.push(c),
                Err(_) => failed += 1,
            }
        }
        let ok = round(&mut conns, 1, Duration::from_secs(5));
        Ok((conns, (ok, failed)))
    })
    .unwrap();
    assert_eq!(opened, (CONNECTIONS, 0), "every connection opens and answers before the loss");
    let per_node: Vec<(u64, u64)> = (1..=3).map(|i| forwarded(&lab, i)).collect();
    println!("(new flows, DSR packets) per node before the loss: {per_node:?}");
    assert!(per_node.iter().all(|&(flows, _)| flows > 0), "ECMP spreads the connections over all three nodes: {per_node:?}");
    assert_eq!(per_node.iter().map(|&(flows, _)| flows).sum::<u64>(), CONNECTIONS as u64, "each connection is one new flow on one node");

    // Lose node 2: link first, then its lb-user and BIRD.
    let killed = Instant::now();
    lab.kill_node(2).unwrap();
    let survivors = [plan::node_v4(1), plan::node_v4(3)];
    let route_gone = xdplb_tests::lab::scale_out::routes::wait_next_hops(&lab.router_ns(), vip_ip, &survivors, ROUTE_BOUND).unwrap();

    // New connections: the time until a whole batch of them succeeds.
    let recovered = netns::run_in(&client, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let batch: Vec<_> = (0..30).map(|_| Conn::open(vip).ok()).collect();
            let mut ok: Vec<Conn> = batch.into_iter().flatten().collect();
            if ok.len() == 30 && round(&mut ok, 0, Duration::from_secs(1)) == 30 {
                return Ok(killed.elapsed());
            }
            anyhow::ensure!(Instant::now() < deadline, "new connections still fail 10 s after the loss");
        }
    })
    .unwrap();

    // Every old connection, moved or not, still reaches its backend.
    let survived = netns::run_in(&client, move || Ok(round(&mut conns, 2, Duration::from_secs(10)))).unwrap();
    let share = survived as f64 / CONNECTIONS as f64;
    let after: Vec<(u64, u64)> = [1, 3].iter().map(|&i| forwarded(&lab, i)).collect();
    println!(
        "node 2 lost: router route without it after {route_gone:?}, new connections all succeed after {recovered:?}, \
         {survived}/{CONNECTIONS} connections survived ({:.1}%); (new flows, DSR packets) on nodes 1 and 3 now {after:?}; lab up in {up:?}, test {:?}",
        share * 100.0,
        start.elapsed()
    );
    assert!(share >= 0.99, "{survived}/{CONNECTIONS} connections survived the node loss");
}
