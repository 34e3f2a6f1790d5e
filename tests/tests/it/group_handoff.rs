//! The BGP hand-off of an LB node in a group (docs/scale-out.md): lb-user
//! keeps a host route per announced VIP address in `group.table` (what the
//! node's routing daemon exports), withdraws an address whose VIPs have no
//! healthy backend and brings it back when one recovers, leaves the routes
//! after a crash (the next attach takes them over), withdraws on SIGINT or
//! SIGTERM before the grace period and detach, and `lb-user detach` removes
//! what a crashed lb-user left.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use xdplb_tests::{
    lab::{
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    require_root,
};

const TABLE: u32 = 100;
const GRACE: Duration = Duration::from_millis(1500);
const V4: &str = "198.18.100.1";
const V6: &str = "fd00:198:18:100::1";
/// fall × interval + timeout, one turn of lb-user's loop, scheduling slack
/// on a shared 2-core machine.
const HEALTH_BOUND: Duration = Duration::from_millis(2 * 300 + 200 + 500 + 1500);

/// The addresses with an lb-user hand-off route (`proto 250`) in the table.
fn announced(lab: &Lab) -> Vec<String> {
    let out = Command::new("ip").args(["-n", &lab.ns(Host::Lb), "route", "show", "table", &TABLE.to_string(), "proto", "250"]).output().unwrap();
    let v4 = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = Command::new("ip").args(["-6", "-n", &lab.ns(Host::Lb), "route", "show", "table", &TABLE.to_string(), "proto", "250"]).output().unwrap();
    let text = v4 + &String::from_utf8_lossy(&out.stdout);
    let mut addrs: Vec<String> = text.lines().filter_map(|l| l.split_whitespace().nth(1)).map(str::to_owned).collect();
    addrs.sort();
    addrs
}

/// Polls until the announced set is `want`; returns how long it took.
fn wait_announced(lab: &Lab, want: &[&str], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let now = announced(lab);
        if now == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "announced {now:?}, want {want:?} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn vips_are_announced_while_healthy_kept_over_a_crash_and_withdrawn_before_detach() {
    require_root!();
    let mut lab = Lab::up_unique("xg", 2).unwrap();
    lab.start_backends().unwrap();
    let check = "{ type: http, path: /health, expect_status: 200, interval: 300ms, timeout: 200ms, rise: 1, fall: 2 }";
    let config = LbConfig::new(&lab)
        .maglev(251, Some(7))
        .extra(&format!("group: {{ node: lb1, table: {TABLE}, grace: {}ms }}", GRACE.as_millis()))
        .vip(Vip::new("web", V4, 80).backends(1..=2, 8080, false).health_check(check))
        .vip(Vip::new("web6", V6, 80).backends(1..=2, 8080, true).health_check(check))
        .write()
        .unwrap();
    let (ns, iface) = (lab.ns(Host::Lb), lab.lb_client_iface());
    let both = [V4, V6];
    let lb = LbUser::attach_config(&ns, &iface, config.path()).unwrap();
    wait_announced(&lab, &both, Duration::from_secs(5));

    // Every backend fails its check: both addresses are withdrawn; one
    // backend back: announced again.
    lab.stop_backend(1).unwrap();
    lab.stop_backend(2).unwrap();
    let gone = wait_announced(&lab, &[], HEALTH_BOUND);
    lb.wait_for_log("vip withdrawn address=198.18.100.1 node=lb1", 0, Duration::from_secs(1)).unwrap();
    lab.start_backend(2).unwrap();
    let back = wait_announced(&lab, &both, HEALTH_BOUND);
    println!("withdrawn {gone:?} after the backends stopped, announced again {back:?} after one returned");

    // A crash leaves the announcement (and forwarding); the next attach
    // takes the routes over.
    // kill9 reaps the process: nothing of it runs any more to change the table.
    lb.kill9();
    assert_eq!(announced(&lab), both, "a crashed lb-user leaves its VIPs announced");
    let lb = LbUser::attach_config(&ns, &iface, config.path()).unwrap();
    assert_eq!(announced(&lab), both);

    // SIGTERM: withdraw first, then the grace period while still attached,
    // then detach.
    let start = Instant::now();
    lb.signal(libc::SIGTERM);
    let withdrawn = wait_announced(&lab, &[], Duration::from_secs(1));
    lb.wait_for_log("VIPs withdrawn, detaching in 1500ms", 0, Duration::from_secs(1)).unwrap();
    assert!(xdplb_tests::lbuser::pin_dir(&iface).exists(), "still attached during the grace period");
    lb.wait_for_log("stopping (SIGTERM): detaching", 0, GRACE + Duration::from_secs(2)).unwrap();
    let detached = start.elapsed();
    assert!(detached >= GRACE, "detached {detached:?} after SIGTERM, before the grace of {GRACE:?}");
    let _ = lb.stop();
    println!("SIGTERM: withdrawn after {withdrawn:?}, detached after {detached:?} (grace {GRACE:?})");

    // `lb-user detach` after a crash withdraws what was left.
    let lb = LbUser::attach_config(&ns, &iface, config.path()).unwrap();
    wait_announced(&lab, &both, Duration::from_secs(5));
    lb.kill9();
    let binary = xdplb_tests::workspace::binary("lb-user").unwrap();
    let out = Command::new(binary).args(["--netns", &ns, "detach", "--iface", &iface]).output().unwrap();
    assert!(out.status.success(), "lb-user detach: {}", String::from_utf8_lossy(&out.stderr));
    assert!(announced(&lab).is_empty(), "lb-user detach withdraws what a crashed lb-user left");
}
