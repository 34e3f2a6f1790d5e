//! The balancer with real traffic in the lab: `lb-user attach --config` on
//! the lb's two interfaces, HTTP from the client to VIPs, every request on a
//! new connection.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use lb_common::Stat;
use lb_user::stats::Report;
use xdplb_tests::{
    counters::SentCounters,
    http,
    lab::{
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    netns, require_root,
};

const REQUESTS: usize = 30;

/// A config for this lab: the lb's client side and backend side, and the
/// Maglev table every test here uses.
fn config(lab: &Lab) -> LbConfig {
    LbConfig::new(lab).maglev(251, Some(7))
}

/// Who served each of `n` requests to `vip`, each on a new connection.
fn served_by(lab: &Lab, vip: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    lab.served_by(vip, n).unwrap()
}

#[test]
fn nat_vips_over_ipv4_and_ipv6_reach_all_three_backends() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    let config = config(&lab)
        .vip(Vip::new("web", "198.18.100.1", 80).backends(1..=3, 8080, false))
        .vip(Vip::new("web6", "fd00:198:18:100::1", 80).backends(1..=3, 8080, true))
        .write()
        .unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    for vip in ["198.18.100.1:80", "[fd00:198:18:100::1]:80"] {
        let seen = served_by(&lab, vip.parse().unwrap(), REQUESTS);
        assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ["be1", "be2", "be3"], "{vip}: {seen:?}");
        assert_eq!(seen.values().sum::<usize>(), REQUESTS);
    }
    let report = Report::read_pinned(&lab.lb_client_iface()).unwrap();
    assert!(report.action(Stat::ForwardNat).packets + report.action(Stat::PassKernelForward).packets >= (2 * REQUESTS * 3) as u64, "{report:?}");
    assert!(report.action(Stat::ReverseNat).packets >= (2 * REQUESTS * 2) as u64, "{report:?}");
    let new_flows: u64 = report.vips.iter().map(|(_, c)| c.new_flows).sum();
    assert_eq!(new_flows, (2 * REQUESTS) as u64, "one new flow per connection: {report:?}");
    assert!(lb.stop().unwrap().success());
}

#[test]
fn dsr_vip_reaches_all_three_backends_which_answer_directly() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    let vip4: SocketAddr = "198.18.100.2:8080".parse().unwrap();
    let vip6: SocketAddr = "[fd00:198:18:100::2]:8080".parse().unwrap();
    lab.add_dsr_vip(vip4.ip()).unwrap();
    lab.add_dsr_vip(vip6.ip()).unwrap();
    lab.start_backends_also_on(&[vip4, vip6]).unwrap();
    let config = config(&lab)
        .vip(Vip::new("dsr", vip4.ip(), 8080).forwarding("dsr").backends(1..=3, 8080, false))
        .vip(Vip::new("dsr6", vip6.ip(), 8080).forwarding("dsr").backends(1..=3, 8080, true))
        .write()
        .unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    for vip in [vip4, vip6] {
        let seen = served_by(&lab, vip, REQUESTS);
        assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ["be1", "be2", "be3"], "{vip}: {seen:?}");
    }
    let report = Report::read_pinned(&lab.lb_client_iface()).unwrap();
    assert!(report.action(Stat::ForwardDsr).packets >= (2 * REQUESTS * 3) as u64, "{report:?}");
    // Replies bypass the balancer's rewriting: nothing was reverse-translated.
    assert_eq!(report.action(Stat::ReverseNat).packets, 0);
    assert!(lb.stop().unwrap().success());
}

#[test]
fn a_denied_client_prefix_gets_no_answer_and_every_packet_is_counted() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 1).unwrap();
    lab.start_backends().unwrap();
    // The client is 198.18.0.2: outside the allowed /25.
    let config = config(&lab).allowlist(&["198.18.0.128/25"], &[80]).vip(Vip::new("web", "198.18.100.1", 80).backends([1], 8080, false)).write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let client = lab.ns(Host::Client);
    let before = Report::read_pinned(&lab.lb_client_iface()).unwrap().action(Stat::DropAllowlistCidr);
    let sent_before = SentCounters::read(&client, &lab.client_iface()).unwrap();
    let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
    let result = netns::run_in(&client, move || http::get(vip, "/", Duration::from_millis(2500)));
    assert!(result.is_err(), "a denied client must get no answer: {result:?}");
    std::thread::sleep(Duration::from_millis(200));
    let dropped = Report::read_pinned(&lab.lb_client_iface()).unwrap().action(Stat::DropAllowlistCidr).packets - before.packets;
    let syns = SentCounters::read(&client, &lab.client_iface()).unwrap().delta(&sent_before).tcp_out;
    assert!(syns >= 2, "the client should have retransmitted its SYN: {syns}");
    assert_eq!(dropped, syns, "every SYN the client sent was dropped and counted");
    // Direct traffic to the backend is not VIP traffic: still allowed.
    let direct = lab.backend_addr(1, false);
    assert_eq!(netns::run_in(&client, move || http::get(direct, "/", Duration::from_secs(5))).unwrap().status, 200);
    assert!(lb.stop().unwrap().success());
}

#[test]
fn a_long_lived_connection_keeps_its_backend_when_the_tables_are_rebuilt_without_another() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    let without = |skip: Option<u8>| config(&lab).vip(Vip::new("web", "198.18.100.1", 80).backends((1..=3u8).filter(|i| Some(*i) != skip), 8080, false));
    let config = without(None).write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
    let client = lab.ns(Host::Client);
    let mut conn = netns::run_in(&client, move || http::KeepAlive::connect(vip, Duration::from_secs(5))).unwrap();
    let first = conn.get("/").unwrap().body.trim().to_owned();
    let keeper: u8 = first.trim_start_matches("be").parse().unwrap();
    let removed = if keeper == 1 { 2 } else { 1 };

    // Rebuild the VIP's tables without `removed` (not the backend this connection uses).
    let seen = lb.log_len();
    config.replace(&without(Some(removed)).yaml()).unwrap();
    lb.signal(libc::SIGHUP);
    lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();

    // What a failure needs to be explained: lb-user's log since the change
    // (a second reload, a health or next-hop rebuild) and the counters.
    let evidence = || format!("lb-user log since the change: {:?}; {:?}", &lb.log_lines()[seen..], Report::read_pinned(&lab.lb_client_iface()));
    for i in 0..5 {
        let body = conn.get("/").map(|r| r.body.trim().to_owned());
        assert_eq!(
            body.as_deref().ok(),
            Some(first.as_str()),
            "request {i} after the reload: the long-lived connection moved or failed ({body:?}); {}",
            evidence()
        );
    }
    let after = lab.served_by(vip, REQUESTS).unwrap_or_else(|e| panic!("new connections after the reload: {e:#}; {}", evidence()));
    assert!(!after.contains_key(&format!("be{removed}")), "removed backend be{removed} still got new flows: {after:?}; {}", evidence());
    assert_eq!(after.values().sum::<usize>(), REQUESTS);
    assert!(lb.stop().unwrap().success());
}

#[test]
fn reload_adds_a_backend_and_a_broken_file_is_refused_while_the_old_config_keeps_forwarding() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    let web = |backends: &[u8]| config(&lab).vip(Vip::new("web", "198.18.100.1", 80).backends(backends.iter().copied(), 8080, false));
    let config = web(&[1, 2]).write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
    assert!(!served_by(&lab, vip, REQUESTS).contains_key("be3"));

    // Add be3: it gets new flows (the file watcher picks the change up).
    let seen = lb.log_len();
    let three = web(&[1, 2, 3]).yaml();
    config.replace(&three).unwrap();
    let seen = lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    let after = served_by(&lab, vip, REQUESTS);
    assert!(after.contains_key("be3"), "added backend got no new flows: {after:?}");

    // A broken file is refused with a clear line; forwarding goes on as before.
    config.replace(&three.replace("port: 80\n", "port: eighty\n")).unwrap();
    lb.signal(libc::SIGHUP);
    lb.wait_for_log("reload refused", seen, Duration::from_secs(10)).unwrap();
    let still = served_by(&lab, vip, REQUESTS);
    assert_eq!(still.keys().cloned().collect::<Vec<_>>(), ["be1", "be2", "be3"], "{still:?}");
    assert!(lb.stop().unwrap().success());
}
