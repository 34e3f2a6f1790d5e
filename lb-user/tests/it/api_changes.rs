//! The control API over HTTP, every verb and its errors, against the real
//! supervisor (docs/operations.md): each change reaches the tables through
//! the one verdict path, and a refused one changes nothing.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use crate::api_support::{raw, two_vips, yaml, Harness};
use xdplb_tests::backend::{Backend, Reply};

const WEB: &str = "/api/vips/web/backends";

fn set(list: &[&str]) -> std::collections::BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn add_weight_drain_undrain_and_remove_go_through_the_tables() {
    let h = Harness::start(&two_vips("conntrack: { drain_timeout: 30s }"));
    assert_eq!(h.in_tables("web"), set(&["198.18.1.11:80", "198.18.1.12:80"]));
    let b = h.backend("web", "198.18.1.11:80");
    assert_eq!(
        (b["drain"].as_str(), b["health"].as_str(), b["in_file"].as_bool(), b["weight"].as_u64()),
        (Some("active"), Some("unchecked"), Some(true), Some(1))
    );

    // Add.
    let a = h.call(Method::POST, WEB, Some(json!({"address": "198.18.1.13", "port": 80, "weight": 2}))).unwrap();
    assert_eq!((a["vip"].as_str(), a["backend"]["address"].as_str(), a["backend"]["in_file"].as_bool()), (Some("web"), Some("198.18.1.13:80"), Some(false)));
    assert_eq!(h.in_tables("web"), set(&["198.18.1.11:80", "198.18.1.12:80", "198.18.1.13:80"]));
    let added_id = a["backend"]["id"].as_u64().unwrap();

    // Weight: the Maglev share follows (total weight 1 + 1 + 2 -> 5 + 1 + 2).
    let share = |h: &Harness, id: u64| {
        let seen = h.seen.lock().unwrap();
        seen.desired.vips[0].maglev.iter().filter(|s| u64::from(**s) == id).count()
    };
    let id11 = b["id"].as_u64().unwrap();
    let before = share(&h, id11);
    let w = h.call(Method::PATCH, &format!("{WEB}/198.18.1.11:80"), Some(json!({"weight": 5}))).unwrap();
    assert_eq!(w["backend"]["weight"], 5);
    assert!(share(&h, id11) > 2 * before, "weight 5 takes a larger share of the table ({before} -> {})", share(&h, id11));

    // Drain: out of the tables, still in the VIP with its id; flows counted.
    let d = h.call(Method::PATCH, &format!("{WEB}/198.18.1.12:80"), Some(json!({"drain": true}))).unwrap();
    assert_eq!((d["backend"]["drain"].as_str(), d["backend"]["in_tables"].as_bool()), (Some("draining"), Some(false)));
    assert_eq!(h.in_tables("web"), set(&["198.18.1.11:80", "198.18.1.13:80"]));
    h.set_flows("web", "198.18.1.12:80", 3);
    h.wait_for("the drained backend's flows counted", Duration::from_secs(5), |h| h.backend("web", "198.18.1.12:80")["live_flows"] == 3).unwrap();
    // Draining again is no error and no change.
    let rebuilds = h.seen.lock().unwrap().rebuilds;
    h.call(Method::PATCH, &format!("{WEB}/198.18.1.12:80"), Some(json!({"drain": true}))).unwrap();
    assert_eq!(h.seen.lock().unwrap().rebuilds, rebuilds);
    // Undrain: back in the tables.
    let u = h.call(Method::PATCH, &format!("{WEB}/198.18.1.12:80"), Some(json!({"drain": false}))).unwrap();
    assert_eq!(u["backend"]["drain"], "active");
    assert_eq!(h.in_tables("web").len(), 3);

    // Remove: 202, out of the tables at once, kept (same id) while its flows live.
    let r = h.call(Method::DELETE, &format!("{WEB}/198.18.1.13:80"), None).unwrap();
    let left = r["backend"]["seconds_left"].as_u64().unwrap();
    assert!((29..=30).contains(&left), "{r}");
    assert_eq!((r["backend"]["drain"].as_str(), r["backend"]["id"].as_u64()), (Some("leaving"), Some(added_id)));
    assert_eq!(h.in_tables("web"), set(&["198.18.1.11:80", "198.18.1.12:80"]));
    let overrides: Vec<String> = h.state()["overrides"].as_array().unwrap().iter().map(|c| format!("{} {}", c["change"], c["backend"])).collect();
    assert_eq!(overrides, ["\"weight\" \"198.18.1.11:80\""], "the removed API backend left no override");
    // Its last flow ends: removed.
    h.set_flows("web", "198.18.1.13:80", 0);
    h.wait_for("the leaving backend removed", Duration::from_secs(5), |h| h.backend("web", "198.18.1.13:80").is_null()).unwrap();
}

#[test]
fn a_drain_timeout_of_zero_removes_at_once() {
    let h = Harness::start(&two_vips(""));
    let r = h.call(Method::DELETE, &format!("{WEB}/198.18.1.12:80"), None).unwrap();
    assert_eq!((r["backend"]["drain"].as_str(), r["backend"]["id"].is_null()), (Some("removed"), true));
    assert!(h.backend("web", "198.18.1.12:80").is_null());
    assert_eq!(h.in_tables("web"), set(&["198.18.1.11:80"]));
}

#[test]
fn refused_changes_name_the_problem_and_change_nothing() {
    let h = Harness::start(&two_vips("conntrack: { drain_timeout: 30s }"));
    h.call(Method::DELETE, &format!("{WEB}/198.18.1.12:80"), None).unwrap();
    let rebuilds = h.seen.lock().unwrap().rebuilds;
    let cases: Vec<(Method, String, Option<serde_json::Value>, u16, &str)> = vec![
        (
            Method::POST,
            "/api/vips/nope/backends".into(),
            Some(json!({"address": "198.18.1.13", "port": 80})),
            404,
            "no vip named \"nope\"; the vips are web, rr",
        ),
        (Method::PATCH, format!("{WEB}/198.18.1.99:80"), Some(json!({"drain": true})), 404, "vip web has no backend 198.18.1.99:80"),
        (Method::DELETE, "/api/vips/nope/backends/198.18.1.11:80".into(), None, 404, "no vip named \"nope\""),
        (Method::GET, "/api/vips".into(), None, 404, "no endpoint /api/vips; the API has GET /api/state"),
        (Method::GET, WEB.into(), None, 405, "GET is not allowed here; use POST"),
        (Method::PATCH, format!("{WEB}/198.18.1.11"), Some(json!({"drain": true})), 400, "\"198.18.1.11\" is not a backend address:port"),
        (
            Method::POST,
            WEB.into(),
            Some(json!({"address": "198.18.1.13", "port": 80, "weight": 500})),
            400,
            "weight: 500 is out of range; a weight must be 1..=100",
        ),
        (
            Method::POST,
            WEB.into(),
            Some(json!({"address": "198.18.1.13", "port": 80, "mac": "02:00:00:00:00:13"})),
            400,
            "mac: is used only with forwarding: dsr",
        ),
        (Method::POST, WEB.into(), Some(json!({"address": "fd00::13", "port": 80})), 400, "address: fd00::13 is IPv6 but the VIP 198.18.100.1 is IPv4"),
        (Method::POST, WEB.into(), Some(json!({"address": "198.18.1.13", "port": 80, "name": "x"})), 400, "request body: unknown field `name`"),
        (Method::POST, WEB.into(), Some(json!({"address": "198.18.1.11", "port": 80})), 409, "vip web already has backend 198.18.1.11:80"),
        (Method::PATCH, "/api/vips/rr/backends/198.18.1.11:81".into(), Some(json!({"weight": 2})), 400, "weight: 2 has no effect: round_robin"),
        (Method::PATCH, format!("{WEB}/198.18.1.11:80"), Some(json!({"weight": 0})), 400, "weight: 0 is out of range"),
        (Method::PATCH, format!("{WEB}/198.18.1.11:80"), Some(json!({"weight": 2, "drain": true})), 400, "give one change"),
        (Method::DELETE, "/api/vips/rr/backends/198.18.1.11:81".into(), None, 409, "198.18.1.11:81 is the last backend of vip rr"),
        (Method::PATCH, format!("{WEB}/198.18.1.12:80"), Some(json!({"drain": true})), 409, "backend 198.18.1.12:80 of vip web is leaving"),
        (Method::DELETE, format!("{WEB}/198.18.1.12:80"), None, 409, "is leaving (removed; at most"),
    ];
    for (method, path, body, status, message) in cases {
        let what = format!("{method} {path} {body:?}");
        let (got, text) = h.refused(method, &path, body);
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(message), "{what}: {text:?} lacks {message:?}");
    }
    // Bodies the client cannot send.
    let (status, body) = raw(h.api, "PATCH", &format!("{WEB}/198.18.1.11:80"), b"{\"weight\": ");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("request body: EOF while parsing"), "{body}");
    let (status, body) = raw(h.api, "POST", WEB, &vec![b' '; 70 * 1024]);
    assert_eq!(status, 413, "{body}");
    // IPv6 backends in a path, brackets as they are or percent-encoded.
    for path in [format!("{WEB}/[fd00::11]:80"), format!("{WEB}/%5Bfd00::11%5D:80")] {
        let (status, body) = raw(h.api, "DELETE", &path, b"");
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("vip web has no backend [fd00::11]:80"), "{body}");
    }
    let (status, body) = raw(h.api, "GET", "/api/state", b"");
    assert_eq!(status, 200, "keep the connection's framing right: {body}");
    assert_eq!(h.seen.lock().unwrap().rebuilds, rebuilds, "no refused change reached the tables");
    // Re-adding the leaving backend keeps it (and its flows).
    h.call(Method::POST, WEB, Some(json!({"address": "198.18.1.12", "port": 80}))).unwrap();
    assert_eq!(h.backend("web", "198.18.1.12:80")["drain"], "active");
    assert_eq!(h.in_tables("web"), set(&["198.18.1.11:80", "198.18.1.12:80"]));
}

#[test]
fn added_and_drained_backends_are_health_checked() {
    // The mock backends serve on a runtime of their own.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();
    let live = Backend::builder("be1").reply(Reply::GreetEcho).start().unwrap();
    let other = Backend::builder("be2").reply(Reply::GreetEcho).start().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let vips = format!(
        "  - name: web\n    address: 198.18.100.1\n    port: 80\n    health_check: {{ type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 1 }}\n    \
         backends: [{{ address: 127.0.0.1, port: {} }}, {{ address: 127.0.0.1, port: {} }}]\n",
        live.addr.port(),
        other.addr.port()
    );
    let h = Harness::start(&yaml("", &vips));
    let dead_s = dead.to_string();
    h.call(Method::POST, WEB, Some(json!({"address": "127.0.0.1", "port": dead.port()}))).unwrap();
    h.wait_for("the added dead backend checked down", Duration::from_secs(5), |h| h.backend("web", &dead_s)["health"] == "down").unwrap();
    assert!(!h.in_tables("web").contains(&dead_s));
    // A drained backend keeps its check: stopped while drained, it is down.
    let other_s = other.addr.to_string();
    h.call(Method::PATCH, &format!("{WEB}/{other_s}"), Some(json!({"drain": true}))).unwrap();
    other.stop();
    h.wait_for("the drained backend checked down", Duration::from_secs(5), |h| h.backend("web", &other_s)["health"] == "down").unwrap();
    assert_eq!(h.backend("web", &other_s)["drain"], "draining");
    assert_eq!(h.in_tables("web"), set(&[&live.addr.to_string()]));
}

#[test]
fn state_has_counters_and_rates_from_the_previous_sample() {
    let h = Harness::start(&two_vips(""));
    // Read without a GET: the first GET is the first sample.
    let id = h.seen.lock().unwrap().desired.vips[0].backend_ids[0];
    let set_packets = |n: u64| {
        let mut seen = h.seen.lock().unwrap();
        seen.counters.backends = vec![(id, lb_common::lb::FlowCounter { packets: n, bytes: n * 100, new_flows: n / 10 })];
    };
    set_packets(1000);
    let first = h.state();
    assert!(first["rates"].is_null(), "no earlier sample: {}", first["rates"]);
    assert_eq!(h.backend("web", "198.18.1.11:80")["counters"]["packets"], 1000);
    set_packets(1200);
    h.wait_for("rates over the window", Duration::from_secs(5), |h| !h.state()["rates"].is_null()).unwrap();
    let s = h.state();
    let window = s["rates"]["interval_s"].as_f64().unwrap();
    assert!(window >= 0.5, "{window}");
    let b = &s["vips"][0]["backends"][0];
    let pps = b["rates"]["packets"].as_f64().unwrap();
    assert!((pps * window - 200.0).abs() < 1e-6, "200 packets over {window} s: {pps}/s");
    assert_eq!(s["counters"]["backends"][0]["packets"], 1200, "the stats --json shape");
}
