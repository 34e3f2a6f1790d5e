//! Draining with real traffic: a reload that removes a backend with
//! `conntrack.drain_timeout` set keeps that backend's established flows
//! (it gets no new ones) until they end or the timeout passes, then removes
//! it.

use std::{collections::BTreeMap, time::Duration};

use lb_user::stats::Report;
use xdplb_tests::{
    http,
    lab::{
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    require_root,
};

const VIP: &str = "198.18.100.1:80";

fn web(lab: &Lab, backends: &[u8], drain: &str) -> LbConfig {
    LbConfig::new(lab).maglev(251, Some(7)).extra(&format!("conntrack: {{ drain_timeout: {drain} }}")).vip(Vip::new("web", "198.18.100.1", 80).backends(
        backends.iter().copied(),
        8080,
        false,
    ))
}

/// Who served each of `n` requests, each on a new connection.
fn served_by(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    lab.served_by(VIP.parse().unwrap(), n).unwrap()
}

/// A kept-alive connection from the client and the backend (1-based) it reached.
fn long_lived(lab: &Lab) -> (http::KeepAlive, u8) {
    lab.keep_alive(VIP.parse().unwrap()).unwrap()
}

fn backend_active(lab: &Lab, i: u8) -> bool {
    let label = lab.backend_addr(i, false).to_string();
    Report::read_pinned(&lab.lb_client_iface()).unwrap().backend_meta.values().any(|m| m.label == label && m.active)
}

#[test]
fn a_removed_backend_keeps_its_long_lived_connection_until_it_ends() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 2).unwrap();
    lab.start_backends().unwrap();
    let config = web(&lab, &[1, 2], "60s").write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let (mut conn, keeper) = long_lived(&lab);
    let other = 3 - keeper;

    // Remove the connection's backend from the file.
    let seen = lb.log_len();
    config.replace(&web(&lab, &[other], "60s").yaml()).unwrap();
    lb.signal(libc::SIGHUP);
    let seen = lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    for _ in 0..5 {
        assert_eq!(conn.get("/").unwrap().body.trim(), format!("be{keeper}"), "the draining backend keeps its connection");
    }
    let fresh = served_by(&lab, 20);
    assert_eq!(fresh.keys().cloned().collect::<Vec<_>>(), [format!("be{other}")], "new flows avoid the draining backend: {fresh:?}");
    assert!(backend_active(&lab, keeper), "still in the maps while draining");

    // The connection ends: the drain is done long before its 60 s.
    drop(conn);
    lb.wait_for_log("reason=\"its last flow ended\"", seen, Duration::from_secs(15)).unwrap();
    assert!(!backend_active(&lab, keeper), "removed from the maps once drained");
    assert!(lb.stop().unwrap().success());
}

#[test]
fn the_drain_timeout_ends_a_drain_whatever_the_flows() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 2).unwrap();
    lab.start_backends().unwrap();
    let config = web(&lab, &[1, 2], "2s").write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let (mut conn, keeper) = long_lived(&lab);

    let seen = lb.log_len();
    config.replace(&web(&lab, &[3 - keeper], "2s").yaml()).unwrap();
    lb.signal(libc::SIGHUP);
    let seen = lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    assert_eq!(conn.get("/").unwrap().body.trim(), format!("be{keeper}"), "kept while draining");
    lb.wait_for_log("reason=\"drain_timeout passed\"", seen, Duration::from_secs(15)).unwrap();
    assert!(!backend_active(&lab, keeper));
    // Removed: the flow chooses again and lands on a backend that knows
    // nothing of it, which resets it.
    assert!(conn.get("/").is_err(), "the connection is cut once the drain timed out");
    assert!(lb.stop().unwrap().success());
}
