//! The control API and the operator CLI with real traffic
//! (docs/operations.md): `lb-user --netns <lb> backends …` against the
//! running `lb-user attach` (its API on the lb namespace's loopback, the
//! default 127.0.0.1:9901). A drained, then removed backend keeps its
//! long-lived connection while new flows avoid it; undrain and add bring
//! new flows to a backend; a changed config file discards the API's
//! changes; errors exit with the documented statuses.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use serde_json::Value;
use xdplb_tests::{
    lab::{
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    require_root,
};

const VIP: &str = "198.18.100.1:80";
const API: &str = "127.0.0.1:9901";

fn web(lab: &Lab, backends: &[u8], drain: &str) -> LbConfig {
    LbConfig::new(lab)
        .maglev(251, Some(7))
        .api(API.parse().unwrap())
        .extra(&format!("conntrack: {{ drain_timeout: {drain} }}"))
        .vip(Vip::new("web", "198.18.100.1", 80).backends(backends.iter().copied(), 8080, false))
}

fn served_by(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    lab.served_by(VIP.parse().unwrap(), n).unwrap()
}

/// New connections until backend `i` serves one (at most `n`): how many it took.
fn reaches(lab: &Lab, i: u8, n: usize) -> Option<usize> {
    (1..=n).find(|_| served_by(lab, 1).contains_key(&format!("be{i}")))
}

fn addr(lab: &Lab, i: u8) -> String {
    lab.backend_addr(i, false).to_string()
}

/// `backends list --json`: the backend at `address`, if listed.
fn listed(lb: &LbUser, address: &str) -> Option<Value> {
    let rows: Value = serde_json::from_str(&lb.cli(&["backends", "list", "--json"]).unwrap()).unwrap();
    rows.as_array().unwrap().iter().find(|r| r["address"] == address).cloned()
}

#[test]
fn a_drained_then_removed_backend_keeps_its_connection_while_new_flows_avoid_it() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    let config = web(&lab, &[1, 2], "60s").write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let (mut conn, keeper) = lab.keep_alive(VIP.parse().unwrap()).unwrap();
    let (other, k) = (3 - keeper, addr(&lab, keeper));

    // Drain: the connection stays, new flows go elsewhere.
    let seen = lb.log_len();
    let out = lb.cli(&["backends", "drain", "web", &k]).unwrap();
    assert_eq!(out, format!("web {k}: draining: no new flows, established ones carry on\n"));
    lb.wait_for_log(&format!("api: backend drained vip=web backend={k}"), seen, Duration::from_secs(5)).unwrap();
    for _ in 0..3 {
        assert_eq!(conn.get("/").unwrap().body.trim(), format!("be{keeper}"), "the drained backend keeps its connection");
    }
    let fresh = served_by(&lab, 20);
    assert_eq!(fresh.keys().cloned().collect::<Vec<_>>(), [format!("be{other}")], "new flows avoid the drained backend: {fresh:?}");
    let health = lb.cli(&["health"]).unwrap();
    assert!(health.lines().any(|l| l.starts_with(&format!("web {k}: unchecked, draining"))), "{health}");

    // Undrain: it gets new flows again. Add be3: so does it.
    lb.cli(&["backends", "undrain", "web", &k]).unwrap();
    assert!(reaches(&lab, keeper, 60).is_some(), "be{keeper} gets new flows once undrained");
    let out = lb.cli(&["backends", "add", "web", &addr(&lab, 3)]).unwrap();
    assert!(out.starts_with(&format!("web {}: active, weight 1", addr(&lab, 3))), "{out}");
    assert!(reaches(&lab, 3, 60).is_some(), "the added backend gets new flows");

    // Remove (DELETE): out of the tables at once, the connection kept.
    let seen = lb.log_len();
    let out = lb.cli(&["backends", "remove", "web", &k]).unwrap();
    assert!(out.starts_with(&format!("web {k}: leaving: no new flows")), "{out}");
    let seen = lb.wait_for_log(&format!("api: backend removed vip=web backend={k} draining"), seen, Duration::from_secs(5)).unwrap();
    assert_eq!(conn.get("/").unwrap().body.trim(), format!("be{keeper}"), "the removed backend keeps its connection while leaving");
    let fresh = served_by(&lab, 20);
    assert!(!fresh.contains_key(&format!("be{keeper}")), "new flows avoid the leaving backend: {fresh:?}");
    let row = listed(&lb, &k).expect("listed while leaving");
    assert_eq!(row["drain"], "leaving");
    assert!(row["seconds_left"].as_u64().is_some_and(|s| s <= 60), "{row}");

    // The connection ends: removed long before the 60 s.
    drop(conn);
    lb.wait_for_log("reason=\"its last flow ended\"", seen, Duration::from_secs(15)).unwrap();
    assert!(listed(&lb, &k).is_none(), "gone once drained");
    assert!(lb.stop().unwrap().success());
}

#[test]
fn a_changed_file_discards_the_runtime_changes_and_errors_exit_by_kind() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 2).unwrap();
    lab.start_backends().unwrap();
    let config = web(&lab, &[1, 2], "10s").write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let b1 = addr(&lab, 1);
    lb.cli(&["backends", "drain", "web", &b1]).unwrap();
    assert_eq!(served_by(&lab, 10).keys().cloned().collect::<Vec<_>>(), ["be2"]);

    // SIGHUP with the same file: still drained.
    let seen = lb.log_len();
    lb.signal(libc::SIGHUP);
    let seen = lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    assert_eq!(served_by(&lab, 10).keys().cloned().collect::<Vec<_>>(), ["be2"], "an unchanged file keeps the drain");
    assert_eq!(listed(&lb, &b1).unwrap()["drain"], "draining");

    // The file changes: the drain is gone, be1 gets new flows again.
    config.replace(&web(&lab, &[1, 2], "20s").yaml()).unwrap();
    lb.signal(libc::SIGHUP);
    lb.wait_for_log(&format!("api: runtime changes discarded, the config file changed: drained vip=web backend={b1}"), seen, Duration::from_secs(10)).unwrap();
    assert_eq!(listed(&lb, &b1).unwrap()["drain"], "active");
    assert!(reaches(&lab, 1, 60).is_some(), "be1 gets new flows after the file won");

    // Errors: the API's message and 1; nothing listening: 69.
    let o = lb.cli_output(&["backends", "weight", "web", &b1, "500"]).unwrap();
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stderr).trim_end()),
        (Some(1), "lb-user: error: weight: 500 is out of range; a weight must be 1..=100 (HTTP 400)")
    );
    let o = lb.cli_output(&["backends", "drain", "nope", &b1]).unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && e.contains("no vip named \"nope\"; the vips are web (HTTP 404)"), "{e}");
    let none: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let o = lb.cli_output(&["health", "--api", &none.to_string()]).unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(69) && e.starts_with(&format!("lb-user: error: no lb-user is listening on {none}")), "{e}");
    assert!(lb.stop().unwrap().success());
}
