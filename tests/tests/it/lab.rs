//! The lab itself: hosts reach each other over IPv4 and IPv6 through the lb,
//! and tearing it down leaves nothing behind.

use std::time::Duration;

use xdplb_tests::{
    http,
    lab::{Host, Lab},
    netns, require_root,
};

#[test]
fn client_reaches_every_backend_through_the_lb_and_down_removes_everything() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    let name = lab.name().to_owned();
    assert_eq!(Lab::namespaces(&name).unwrap().len(), 6, "client, lb, sw, be1..3");
    lab.start_backends().unwrap();
    let client = lab.ns(Host::Client);
    for i in 1..=3 {
        for v6 in [false, true] {
            let addr = lab.backend_addr(i, v6);
            let resp = netns::run_in(&client, move || http::get(addr, "/", Duration::from_secs(5))).unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body, format!("be{i}\n"), "{addr}");
            let health = netns::run_in(&client, move || http::get(addr, "/health", Duration::from_secs(5))).unwrap();
            assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
        }
    }
    let status = Lab::status(&name).unwrap();
    assert!(status.contains("198.18.1.11/24") && status.contains("fd00:198:18::2/64"), "{status}");
    drop(lab);
    assert!(Lab::namespaces(&name).unwrap().is_empty(), "namespaces left after drop");
    assert!(Lab::status(&name).unwrap().contains("is down"));
}

#[test]
fn a_second_lab_with_the_same_name_is_refused_and_the_first_survives() {
    require_root!();
    let lab = Lab::up_unique("xt", 1).unwrap();
    let err = Lab::up(lab.name(), 1).err().expect("duplicate lab name must be refused");
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert_eq!(Lab::namespaces(lab.name()).unwrap().len(), 4);
}

#[test]
fn a_panicking_test_still_removes_its_lab() {
    require_root!();
    let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = name.clone();
    let result = std::panic::catch_unwind(move || {
        let lab = Lab::up_unique("xt", 1).unwrap();
        *seen.lock().unwrap() = lab.name().to_owned();
        panic!("boom");
    });
    assert!(result.is_err());
    let name = name.lock().unwrap().clone();
    assert!(!name.is_empty());
    assert!(Lab::namespaces(&name).unwrap().is_empty(), "lab {name} survived a panic");
}
