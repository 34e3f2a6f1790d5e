//! Hitless restart: lb-user is SIGKILLed under load and started again; the
//! pinned link keeps forwarding meanwhile and the new lb-user adopts the maps,
//! conntrack included. `lb-user detach` removes what a dead lb-user left.

use std::{
    net::SocketAddr,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use aya::maps::{HashMap, Map, MapData};
use lb_common::{
    lb::{FlowKey, FlowState},
    map_names,
};
use xdplb_tests::{
    http,
    lab::{
        config::{ConfigFile, LbConfig, Vip},
        Host, Lab,
    },
    lbuser::{pin_dir, LbUser},
    netns, require_root, workspace,
};

fn config(lab: &Lab) -> ConfigFile {
    LbConfig::new(lab).maglev(251, None).vip(Vip::new("web", "198.18.100.1", 80).backends(1..=3, 8080, false)).write().unwrap()
}

fn conntrack_entries(iface: &str) -> usize {
    let data = MapData::from_pin(pin_dir(iface).join(map_names::CONNTRACK)).unwrap();
    let map = Map::LruHashMap(data);
    let ct = HashMap::<&MapData, FlowKey, FlowState>::try_from(&map).unwrap();
    ct.keys().count()
}

fn xdp_attached(lab: &Lab, iface: &str) -> bool {
    let out = Command::new("ip").args(["-n", &lab.ns(Host::Lb), "link", "show", "dev", iface]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn sigkill_and_restart_drop_no_connection_and_keep_conntrack() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    let config = config(&lab);
    let (lb_ns, iface) = (lab.ns(Host::Lb), lab.lb_client_iface());
    let first = LbUser::attach_config(&lb_ns, &iface, config.path()).unwrap();
    let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
    let client = lab.ns(Host::Client);

    // Long-lived connections, each pinned to its backend.
    let mut long_lived = Vec::new();
    for _ in 0..3 {
        let mut c = netns::run_in(&client, move || http::KeepAlive::connect(vip, Duration::from_secs(5))).unwrap();
        let who = c.get("/").unwrap().body;
        long_lived.push((c, who));
    }
    // A steady load of new connections, bounded in time and count.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, client) = (stop.clone(), ok.clone(), failed.clone(), client.clone());
        std::thread::spawn(move || {
            netns::run_in(&client, move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    match http::get(vip, "/", Duration::from_secs(3)) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            })
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    let tracked_before = conntrack_entries(&iface);
    first.kill9();
    // Nobody runs lb-user now: the pinned link keeps forwarding.
    let during = ok.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(700));
    assert!(ok.load(Ordering::SeqCst) > during, "no request succeeded while lb-user was dead");
    assert!(xdp_attached(&lab, &iface), "the program must stay attached after SIGKILL");

    // A counter map of an older build (before COUNTERS): the adopting
    // lb-user must unpin it (docs/xdp.md, "Maps").
    let retired = pin_dir(&iface).join(map_names::RETIRED[1]);
    xdplb_tests::pins::pin_map(&retired, xdplb_tests::pins::MAP_TYPE_ARRAY, 4, 16, 13).unwrap();
    // And pins from before REPLY_SOURCES: the adopting lb-user creates it and
    // marks every backend, or the long-lived connections' replies below would
    // reach the kernel untranslated.
    for dir in [pin_dir(&iface), pin_dir(&lab.lb_backend_iface())] {
        std::fs::remove_file(dir.join(map_names::REPLY_SOURCES)).unwrap();
    }
    let second = LbUser::attach_config(&lb_ns, &iface, config.path()).unwrap();
    second.wait_for_log("adopted the running program", 0, Duration::from_secs(10)).unwrap();
    assert!(!retired.exists(), "the retired pin {} was left", retired.display());
    assert!(pin_dir(&iface).join(map_names::REPLY_SOURCES).exists());
    second.stats_json().unwrap();
    assert!(conntrack_entries(&iface) >= tracked_before, "conntrack entries were lost");
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap().unwrap();

    for (c, who) in &mut long_lived {
        assert_eq!(&c.get("/").unwrap().body, who, "a long-lived connection changed backend");
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "requests failed across the restart ({} succeeded)", ok.load(Ordering::SeqCst));
    assert!(ok.load(Ordering::SeqCst) > 50);
    assert!(second.stop().unwrap().success());
    assert!(!pin_dir(&iface).exists());
    assert!(!xdp_attached(&lab, &iface), "Ctrl-C must detach");
}

#[test]
fn detach_removes_what_a_killed_lb_user_left_attached() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    let config = config(&lab);
    let (lb_ns, iface) = (lab.ns(Host::Lb), lab.lb_client_iface());
    LbUser::attach_config(&lb_ns, &iface, config.path()).unwrap().kill9();
    assert!(xdp_attached(&lab, &iface));
    let out = Command::new(workspace::binary("lb-user").unwrap()).args(["--netns", &lb_ns, "detach", "--iface", &iface]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!pin_dir(&iface).exists());
    assert!(!xdp_attached(&lab, &iface), "detach must detach");
    // The backend-side interface was attached too; its pins are separate.
    let be_iface = lab.lb_backend_iface();
    let out = Command::new(workspace::binary("lb-user").unwrap()).args(["--netns", &lb_ns, "detach", "--iface", &be_iface]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!xdp_attached(&lab, &be_iface));
}
