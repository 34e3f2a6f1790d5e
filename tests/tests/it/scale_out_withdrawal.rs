//! The scale-out lab's VIP withdrawal (docs/scale-out.md): when every
//! backend of a VIP fails its health check, every node's lb-user withdraws
//! it from its hand-off table, BIRD withdraws it over BGP and the router
//! loses the route; one backend back and it returns through every node.

use std::{net::IpAddr, time::Duration};

use xdplb_tests::{
    lab::scale_out::{plan, routes, NodeSpec, ScaleOut},
    require_root,
};

const VIP: &str = "198.18.100.8";
/// fall (2) × interval (300 ms) + timeout, one lb-user loop turn, BGP's
/// update, and slack for a shared 2-core machine.
const BOUND: Duration = Duration::from_secs(5);

#[test]
fn a_vip_without_healthy_backends_leaves_the_router_and_returns_with_one() {
    require_root!();
    let vip: IpAddr = VIP.parse().unwrap();
    let mut lab = ScaleOut::up_unique("xw", 3, 2, &NodeSpec::echo(vip)).unwrap();
    let router = lab.router_ns();
    let all: Vec<_> = (1..=3).map(plan::node_v4).collect();
    lab.lab_mut().stop_backend(1).unwrap();
    lab.lab_mut().stop_backend(2).unwrap();
    let gone = routes::wait_next_hops(&router, vip, &[], BOUND).unwrap();
    lab.start_backends(&[2]).unwrap();
    let back = routes::wait_next_hops(&router, vip, &all, BOUND).unwrap();
    println!("router route withdrawn {gone:?} after both backends stopped, back over all three nodes {back:?} after one answered again");
}
