//! The operator CLI (`lb-user backends …`, `lb-user health`), the real
//! binary against the real API (docs/operations.md): every verb, its text
//! and JSON output, and its errors with their exit status.

use std::process::{Command, Output};

use serde_json::Value;

use crate::api_support::{two_vips, Harness};

const LB_USER: &str = env!("CARGO_BIN_EXE_lb-user");

fn cli(h: &Harness, args: &[&str]) -> Output {
    let api = h.api.to_string();
    Command::new(LB_USER).args(args).args(["--api", &api]).env("RUST_LOG", "off").output().expect("spawn lb-user")
}

/// stdout of a command that must succeed.
fn ok(h: &Harness, args: &[&str]) -> String {
    let o = cli(h, args);
    assert!(o.status.success(), "{args:?}: {:?}\n{}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// stderr and exit status of a command that must fail.
fn fails(o: Output) -> (String, i32) {
    assert!(!o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(!e.contains("panicked"), "{e}");
    (e, o.status.code().unwrap())
}

#[test]
fn every_verb_with_text_and_json() {
    let h = Harness::start(&two_vips("conntrack: { drain_timeout: 30s }"));
    let list = ok(&h, &["backends", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("VIP  BACKEND") && lines[0].contains("HEALTH") && lines[0].contains("STATE"), "{list}");
    assert_eq!(lines.len(), 4, "a header and three backends: {list}");
    assert!(lines[1].starts_with("web  198.18.1.11:80") && lines[1].contains("active"), "{list}");

    let added = ok(&h, &["backends", "add", "web", "198.18.1.13:80", "--weight", "2"]);
    assert!(added.starts_with("web 198.18.1.13:80: active, weight 2, id "), "{added}");
    assert_eq!(ok(&h, &["backends", "weight", "web", "198.18.1.13:80", "3"]).trim_end().split(", ").nth(1), Some("weight 3"));
    assert_eq!(ok(&h, &["backends", "drain", "web", "198.18.1.12:80"]), "web 198.18.1.12:80: draining: no new flows, established ones carry on\n");
    let health = ok(&h, &["health"]);
    assert!(health.lines().any(|l| l.starts_with("web 198.18.1.12:80: unchecked, draining")), "{health}");
    assert_eq!(health.lines().count(), 4, "one line per backend: {health}");
    assert!(ok(&h, &["backends", "undrain", "web", "198.18.1.12:80"]).starts_with("web 198.18.1.12:80: active"));
    let removed = ok(&h, &["backends", "remove", "web", "198.18.1.13:80"]);
    assert!(removed.starts_with("web 198.18.1.13:80: leaving: no new flows; removed when its last flow ends, in at most "), "{removed}");

    // JSON: the API's objects.
    let rows: Value = serde_json::from_str(&ok(&h, &["backends", "list", "--vip", "web", "--json"])).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!((rows[2]["address"].as_str(), rows[2]["drain"].as_str(), rows[2]["vip"].as_str()), (Some("198.18.1.13:80"), Some("leaving"), Some("web")));
    let health: Value = serde_json::from_str(&ok(&h, &["health", "--json"])).unwrap();
    assert_eq!(health[0].as_object().unwrap().keys().count(), 8, "{health}");
    let change: Value = serde_json::from_str(&ok(&h, &["backends", "--json", "drain", "rr", "198.18.1.11:81"])).unwrap();
    assert_eq!((change["vip"].as_str(), change["backend"]["drain"].as_str()), (Some("rr"), Some("draining")));
}

#[test]
fn errors_say_what_is_wrong_and_exit_by_kind() {
    let h = Harness::start(&two_vips(""));
    // Refused by the API: its message, exit 1.
    let (e, code) = fails(cli(&h, &["backends", "drain", "web", "198.18.1.99:80"]));
    assert_eq!(e, "lb-user: error: vip web has no backend 198.18.1.99:80 (`lb-user backends list` shows them) (HTTP 404)\n");
    assert_eq!(code, 1);
    let (e, code) = fails(cli(&h, &["backends", "weight", "web", "198.18.1.11:80", "500"]));
    assert_eq!((e.as_str(), code), ("lb-user: error: weight: 500 is out of range; a weight must be 1..=100 (HTTP 400)\n", 1));
    let (e, code) = fails(cli(&h, &["backends", "list", "--vip", "nope"]));
    assert_eq!((e.as_str(), code), ("lb-user: error: no vip named \"nope\" (the vips are web, rr)\n", 1));
    // Usage: clap's status 2, naming the argument.
    let (e, code) = fails(cli(&h, &["backends", "drain", "web", "198.18.1.11"]));
    assert!(e.contains("\"198.18.1.11\" is not a backend address:port"), "{e}");
    assert_eq!(code, 2);
    // Nothing listening: 69 and where to look.
    drop(h);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let o = Command::new(LB_USER).args(["health", "--api", &free.to_string()]).env("RUST_LOG", "off").output().unwrap();
    let (e, code) = fails(o);
    let first = e.lines().next().unwrap();
    assert_eq!(first, format!("lb-user: error: no lb-user is listening on {free} (is lb-user attach running with an api listener? see docs/operations.md)"));
    assert!(e.lines().skip(1).all(|l| l.starts_with("  caused by: ")), "{e}");
    assert_eq!(code, 69);
}
