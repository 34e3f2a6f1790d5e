//! DSR next hops with real traffic: without a configured `mac`, lb-user
//! makes the kernel resolve each backend's neighbour (a managed entry),
//! keeps a backend out of the tables until it is resolved, and keeps it
//! resolved; with a `mac`, the program sends to that MAC out of the
//! interface the packet came in on, whatever the neighbour table says.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use lb_common::Stat;
use lb_user::stats::Report;
use xdplb_tests::{
    http,
    lab::{
        addr,
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    netns, require_root, sys, workspace,
};

/// One entry of `ip -j neigh show`.
#[derive(Debug)]
struct Entry {
    dst: IpAddr,
    managed: bool,
    valid: bool,
}

/// The lb's neighbour entries on its backend-side interface.
fn neighbours(lab: &Lab) -> Vec<Entry> {
    let out = sys::run_stdout("ip", &["-n", &lab.ns(Host::Lb), "-j", "-d", "neigh", "show", "dev", &lab.lb_backend_iface()]).unwrap();
    let json: serde_json::Value = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .map(|e| Entry {
            dst: e["dst"].as_str().unwrap().parse().unwrap(),
            managed: e.get("managed").is_some(),
            valid: e["state"].as_array().unwrap().iter().any(|s| ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"].contains(&s.as_str().unwrap())),
        })
        .collect()
}

/// Polls until `ok` holds for the neighbour table (10 s at most).
fn wait_neighbours(lab: &Lab, what: &str, ok: impl Fn(&[Entry]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = neighbours(lab);
        if ok(&entries) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {entries:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn managed_and_valid(entries: &[Entry], addr: IpAddr) -> bool {
    entries.iter().any(|e| e.dst == addr && e.managed && e.valid)
}

/// `n` requests to `vip` from host `from`, each on a new connection (new
/// source port, so new flows spread over the backends): how many failed.
fn failures(lab: &Lab, from: Host, vip: SocketAddr, n: usize) -> usize {
    netns::run_in(&lab.ns(from), move || Ok((0..n).filter(|_| !http::get(vip, "/", Duration::from_secs(2)).is_ok_and(|r| r.status == 200)).count())).unwrap()
}

#[test]
fn dsr_without_a_mac_waits_for_its_next_hop_and_keeps_it_resolved() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 2).unwrap();
    let vip: SocketAddr = "198.18.100.2:8080".parse().unwrap();
    lab.add_dsr_vip(vip.ip()).unwrap();
    lab.start_backends_also_on(&[vip]).unwrap();
    // A third backend nobody holds: its neighbour never resolves.
    let phantom = SocketAddr::new(addr::backend_v4(9).into(), 8080);
    // No health check: nothing but lb-user resolves the neighbours (the
    // lab's readiness probes did; forget what they learned).
    sys::ip(&["-n", &lab.ns(Host::Lb), "neigh", "flush", "dev", &lab.lb_backend_iface()]).unwrap();
    let config = LbConfig::new(&lab)
        .maglev(251, Some(7))
        .vip(Vip::new("dsr", vip.ip(), 8080).forwarding("dsr").backends(1..=2, 8080, false).backend(phantom))
        .write()
        .unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    // Traffic right after the attach: the first tables already leave the
    // unresolved backend out.
    let failed = failures(&lab, Host::Client, vip, 30);
    let report = Report::read_pinned(&lab.lb_client_iface()).unwrap();
    assert_eq!(failed, 0, "no flow goes to the unresolved backend: {report:?}");
    assert_eq!(report.action(Stat::DropNoRoute).packets, 0, "{report:?}");
    assert!(report.action(Stat::ForwardDsr).packets >= 30, "{report:?}");
    let phantom_meta = report.backend_meta.values().find(|m| m.label == phantom.to_string()).expect("the phantom backend is listed");
    assert!(!phantom_meta.up, "the unresolved backend is reported out of the tables: {phantom_meta:?}");
    let backends = [lab.backend_addr(1, false).ip(), lab.backend_addr(2, false).ip()];
    wait_neighbours(&lab, "managed entries for both backends, resolved", |e| backends.iter().all(|&b| managed_and_valid(e, b)));
    assert!(neighbours(&lab).iter().any(|e| e.dst == phantom.ip() && e.managed && !e.valid), "the phantom's entry is managed and unresolved");

    // Entries that go away (flushed here; evicted or failed in real life)
    // come back managed and resolved, without any traffic of the lb's own.
    sys::ip(&["-n", &lab.ns(Host::Lb), "neigh", "flush", "dev", &lab.lb_backend_iface()]).unwrap();
    wait_neighbours(&lab, "managed entries restored after a flush", |e| backends.iter().all(|&b| managed_and_valid(e, b)));
    assert_eq!(failures(&lab, Host::Client, vip, 10), 0);

    // Detach removes the entries lb-user added.
    assert!(lb.stop().unwrap().success());
    wait_neighbours(&lab, "managed entries removed on detach", |e| !e.iter().any(|e| e.managed));
}

#[test]
fn dsr_to_a_configured_mac_is_one_armed_and_ignores_the_neighbour_table() {
    require_root!();
    // be1 serves the VIP; be2, on the same segment, is the client: its
    // packets reach the lb's backend-side interface, which sends them back
    // out to be1 (one-armed DSR), and be1 answers be2 directly.
    let mut lab = Lab::up_unique("xt", 2).unwrap();
    let vip: SocketAddr = "198.18.100.4:8080".parse().unwrap();
    let be1 = lab.ns(Host::Backend(1));
    sys::ip(&["-n", &be1, "addr", "add", &format!("{}/32", vip.ip()), "dev", "lo"]).unwrap();
    for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
        let path = format!("/proc/sys/net/ipv4/conf/all/{key}");
        netns::run_in(&be1, move || Ok(std::fs::write(&path, value)?)).unwrap();
    }
    let binary = workspace::binary("lab-backend").unwrap();
    lab.spawn(Host::Backend(1), "dsr backend be1", &binary, &["--name".into(), "be1".into(), "--listen".into(), vip.to_string()]).unwrap();
    let be1_addr = lab.backend_addr(1, false).ip();
    let be1_mac = lab.mac(Host::Backend(1), &lab.backend_iface(1)).unwrap();
    // The neighbour table lies about be1: a lookup would send to nowhere.
    sys::ip(&[
        "-n",
        &lab.ns(Host::Lb),
        "neigh",
        "replace",
        &be1_addr.to_string(),
        "lladdr",
        "02:00:00:00:de:ad",
        "nud",
        "permanent",
        "dev",
        &lab.lb_backend_iface(),
    ])
    .unwrap();
    let config = LbConfig::new(&lab)
        .maglev(251, Some(7))
        .vip(Vip::new("dsr", vip.ip(), 8080).forwarding("dsr").backend_with_mac(SocketAddr::new(be1_addr, 8080), be1_mac))
        .write()
        .unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    // On veth, XDP_TX reaches the peer only while the peer runs an XDP
    // program: the program without VIPs (count and pass) on the switch port.
    let switch_port = LbUser::attach(&lab.ns(Host::Switch), &lab.switch_lb_iface(), &[]).unwrap();
    let failed = failures(&lab, Host::Backend(2), vip, 20);
    let report = Report::read_pinned(&lab.lb_client_iface()).unwrap();
    assert_eq!(failed, 0, "every request reaches be1 through its configured MAC: {report:?}");
    assert!(report.action(Stat::ForwardDsr).packets >= 20, "{report:?}");
    assert!(!neighbours(&lab).iter().any(|e| e.managed), "a backend with a mac needs no managed entry");
    assert!(switch_port.stop().unwrap().success());
    assert!(lb.stop().unwrap().success());
}
