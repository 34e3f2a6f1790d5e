//! Attach reloads: the health verdicts of backends that stay are kept (a
//! backend found dead before the reload gets no new flows right after it;
//! before the attach supervisor kept them, every reload reset all backends
//! to up, and a dead backend got new flows again for `fall × interval`), and
//! settings a running attachment cannot apply are refused, not ignored.

use std::time::{Duration, Instant};

use xdplb_tests::{
    lab::{
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    require_root,
};

/// Long enough that a reset-to-up backend would stay up for a whole second
/// after the reload (fall = 2: the first check runs at once, the second one
/// interval later), far longer than reading the stats takes.
const CHECK: &str = "{ type: tcp, interval: 1s, timeout: 200ms, rise: 3, fall: 2 }";

fn be2_up(lb: &LbUser) -> Option<bool> {
    let json = lb.stats_json().unwrap();
    json["backends"].as_array()?.iter().find(|b| b["label"] == "198.18.1.12:8080").and_then(|b| b["up"].as_bool())
}

#[test]
fn a_backend_that_is_down_stays_down_across_a_reload() {
    require_root!();
    let mut lab = Lab::up_unique("xr", 3).unwrap();
    lab.start_backends().unwrap();
    lab.stop_backend(2).unwrap();
    let web = Vip::new("web", "198.18.100.1", 80).backends(1..=3, 8080, false).health_check(CHECK);
    let config = LbConfig::new(&lab).vip(web.clone()).write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while be2_up(&lb) != Some(false) {
        assert!(Instant::now() < deadline, "be2 never went down: {:#}", lb.stats_json().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Reload with one more VIP; `web` and its backends stay as they are.
    let seen = lb.log_len();
    let more = LbConfig::new(&lab).vip(web).vip(Vip::new("api", "198.18.100.2", 80).backends(1..=1, 8080, false));
    config.replace(&more.yaml()).unwrap();
    lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    let right_after = be2_up(&lb);
    let json = lb.stats_json().unwrap();
    assert_eq!(json["vips"].as_array().map(Vec::len), Some(2), "the reload took effect: {json:#}");
    assert_eq!(right_after, Some(false), "be2 was reset to up by the reload");
    // And it stays down for longer than a reset one would have stayed up.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(be2_up(&lb), Some(false));
    assert!(lb.stop().unwrap().success());
}

#[test]
fn a_reload_that_moves_the_metrics_endpoint_the_api_or_the_attach_mode_is_refused() {
    require_root!();
    let mut lab = Lab::up_unique("xr", 2).unwrap();
    lab.start_backends().unwrap();
    let web = || Vip::new("web", "198.18.100.1", 80).backends(1..=2, 8080, false);
    let base = LbConfig::new(&lab).vip(web()).metrics("198.18.1.1:9189".parse().unwrap());
    let config = base.write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();

    let seen = lb.log_len();
    config.replace(&LbConfig::new(&lab).vip(web()).metrics("198.18.1.1:9190".parse().unwrap()).yaml()).unwrap();
    lb.wait_for_log("reload refused", seen, Duration::from_secs(10)).unwrap();
    lb.wait_for_log("metrics.listen cannot change while attached (198.18.1.1:9189 -> 198.18.1.1:9190)", seen, Duration::from_secs(2)).unwrap();

    let seen = lb.log_len();
    config.replace(&base.clone().extra("attach_mode: skb\n").yaml()).unwrap();
    lb.wait_for_log("reload refused", seen, Duration::from_secs(10)).unwrap();
    lb.wait_for_log("attach_mode cannot change while attached", seen, Duration::from_secs(2)).unwrap();

    let seen = lb.log_len();
    config.replace(&base.clone().api("127.0.0.1:9901".parse().unwrap()).yaml()).unwrap();
    lb.wait_for_log("reload refused", seen, Duration::from_secs(10)).unwrap();
    lb.wait_for_log("api.listen cannot change while attached (none -> 127.0.0.1:9901)", seen, Duration::from_secs(2)).unwrap();

    // The running config is untouched: the same file back is no change at all.
    let seen = lb.log_len();
    config.replace(&base.yaml()).unwrap();
    lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    assert!(lb.stop().unwrap().success());
}
