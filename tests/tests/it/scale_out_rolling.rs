//! The scale-out lab's rolling restart (docs/scale-out.md): three LB nodes,
//! long-lived TCP connections spread over all of them and a steady load of
//! short requests; each node's lb-user in turn is stopped through SIGTERM
//! (withdraw, grace, detach) and started again. A long-lived connection
//! whose node is out moves by ECMP to a node without conntrack for it and
//! keeps its backend through Maglev; so does it when its node returns.
//! Nothing is lost, nothing fails.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
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

const VIP: &str = "198.18.100.9";
const CONNECTIONS: usize = 90;
/// A node's route leaves the router within its grace period (the
/// withdrawal is the first thing SIGTERM does); this is only the poll's
/// bound after lb-user has exited.
const GONE_BOUND: Duration = Duration::from_secs(3);
/// A restarted lb-user: attach, one health check pass, BIRD's export and
/// the router's BGP update, with slack for a shared 2-core machine.
const BACK_BOUND: Duration = Duration::from_secs(10);
/// The load stops on its own this long after it started, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(40);
const LOAD_MAX_REQUESTS: usize = 20_000;

/// Short connections one after another (connect, one request, close) until
/// `stop` or the load's limits: (succeeded, failed).
fn load(vip: SocketAddr, stop: &AtomicBool) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT && ok + failed < LOAD_MAX_REQUESTS {
        let n = ok + failed;
        let answered = Conn::open(vip).is_ok_and(|mut c| c.send(n).is_ok() && c.expect(n, Instant::now() + Duration::from_secs(2)));
        if answered {
            ok += 1;
        } else {
            failed += 1;
        }
        // A steady pace, not a flood: the machine is shared.
        std::thread::sleep(Duration::from_millis(5));
    }
    (ok, failed)
}

/// Node `i`'s new flows on the VIP since its lb-user attached.
fn new_flows(lab: &ScaleOut, i: u8) -> u64 {
    let report = Report::read_pinned(&lab.node_iface(i)).unwrap();
    report.vips.iter().map(|(_, c)| c.new_flows).sum()
}

#[test]
fn a_rolling_restart_of_three_lb_nodes_loses_no_connection_and_fails_no_request() {
    require_root!();
    let start = Instant::now();
    let vip_ip: IpAddr = VIP.parse().unwrap();
    let spec = NodeSpec::echo(vip_ip);
    let vip = SocketAddr::new(vip_ip, spec.echo_port);
    let mut lab = ScaleOut::up_unique("xr", 3, 3, &spec).unwrap();
    let up = start.elapsed();
    let router = lab.router_ns();
    let client = lab.lab().ns(Host::Client);
    let all: Vec<_> = (1..=3).map(plan::node_v4).collect();

    let mut conns = netns::run_in(&client, move || {
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            conns.push(Conn::open(vip)?);
        }
        Ok(conns)
    })
    .unwrap();
    let per_node: Vec<u64> = (1..=3).map(|i| new_flows(&lab, i)).collect();
    println!("long-lived connections per node: {per_node:?}");
    assert!(per_node.iter().all(|&n| n > 0), "ECMP spreads the connections over all three nodes: {per_node:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let load_thread = {
        let (client, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || netns::run_in(&client, move || Ok(load(vip, &stop))))
    };

    // One request on every long-lived connection, from the client's namespace.
    let check = |conns: Vec<Conn>, n: usize, when: &str| -> Vec<Conn> {
        let (conns, answered) = netns::run_in(&client, move || {
            let mut conns = conns;
            let answered = round(&mut conns, n, Duration::from_secs(5));
            Ok((conns, answered))
        })
        .unwrap();
        assert_eq!(answered, CONNECTIONS, "long-lived connections answering {when}");
        conns
    };
    conns = check(conns, 0, "before the restarts");
    let mut timings = Vec::new();
    for i in 1..=3u8 {
        let stopping = Instant::now();
        lab.stop_node_gracefully(i).unwrap();
        let stopped = stopping.elapsed();
        let others: Vec<_> = all.iter().copied().filter(|&a| a != plan::node_v4(i)).collect();
        routes::wait_next_hops(&router, vip_ip, &others, GONE_BOUND).unwrap();
        conns = check(conns, usize::from(i) * 2 - 1, &format!("with node {i} out"));
        let starting = Instant::now();
        lab.start_node(i).unwrap();
        let back = routes::wait_next_hops(&router, vip_ip, &all, BACK_BOUND).unwrap();
        let returned = starting.elapsed();
        conns = check(conns, usize::from(i) * 2, &format!("after node {i} returned"));
        println!("node {i}: SIGTERM to exit {stopped:?}; started again and back in the router's route after {returned:?} (route poll {back:?})");
        timings.push((stopped, returned));
    }

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load_thread.join().unwrap().unwrap();
    println!(
        "steady load: {ok} requests answered, {failed} failed; {CONNECTIONS} long-lived connections all answered throughout; lab up in {up:?}, test {:?}",
        start.elapsed()
    );
    drop(conns);
    assert!(ok > 0, "the steady load ran");
    assert_eq!(failed, 0, "no request of the steady load fails during the rolling restart ({ok} answered)");
}
