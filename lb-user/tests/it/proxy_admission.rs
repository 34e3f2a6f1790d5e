//! `lb-user proxy` admission: allowlist, per-client-IP concurrent and rate
//! limits, no backend / connect failures; each refusal counted by reason.

use std::time::{Duration, Instant};

use crate::proxy_support::*;

fn rejected(p: &Running, vip: &str, reason: &str) -> f64 {
    metric(&p.metrics(), "xdplb_proxy_rejected_total", &[("vip", vip), ("reason", reason)]).unwrap()
}

#[tokio::test]
async fn allowlist_checks_source_and_vip_port() {
    let b = greeter("b0");
    let (l1, p1) = reserve();
    let (l2, p2) = reserve();
    let yaml = config_yaml(
        &[
            VipSpec { name: "open", port: p1, algorithm: "maglev", backends: &[&b], health_check: "" },
            VipSpec { name: "closed", port: p2, algorithm: "maglev", backends: &[&b], health_check: "" },
        ],
        &format!("allowlist: {{ cidrs: [127.0.0.0/30], ports: [{p1}], scope: vips }}\n"),
    );
    let mut p = start(&yaml, vec![("open", l1), ("closed", l2)], None).await;
    assert_eq!(request("127.0.0.1", p.vip("open")).await.unwrap(), "b0");
    assert_eq!(request("127.0.0.3", p.vip("open")).await.unwrap(), "b0");
    assert!(request("127.0.0.4", p.vip("open")).await.is_err(), "source outside the allowlist");
    assert!(request("127.0.0.1", p.vip("closed")).await.is_err(), "port outside the allowlist");
    assert_eq!(rejected(&p, "open", "allowlist"), 1.0);
    assert_eq!(rejected(&p, "closed", "allowlist"), 1.0);
    let m = p.metrics();
    assert_eq!(metric(&m, "xdplb_proxy_connections_total", &[("vip", "open"), ("backend", &b.addr.to_string())]), Some(2.0));
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn per_ip_concurrent_and_rate_limits() {
    let b = greeter("b0");
    let (l, port) = reserve();
    let yaml = config_yaml(
        &[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b], health_check: "" }],
        "proxy: { max_conns_per_ip: 2, max_new_conns_per_minute: 5, drain_timeout: 200ms }\n",
    );
    let mut p = start(&yaml, vec![("web", l)], None).await;
    let vip = p.vip("web");

    // Concurrent: two open from 127.0.0.3, the third refused, another IP fine.
    let (mut c1, _) = open("127.0.0.3", vip).await.unwrap();
    let (_c2, _) = open("127.0.0.3", vip).await.unwrap();
    assert!(open("127.0.0.3", vip).await.is_err());
    assert_eq!(rejected(&p, "web", "limit_concurrent"), 1.0);
    let (_other, _) = open("127.0.0.4", vip).await.unwrap();
    assert_eq!(echo(&mut c1, "still here").await.unwrap(), "still here");
    // Closing one frees a slot (once the proxy has seen the close).
    drop(c1);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match open("127.0.0.3", vip).await {
            Ok(_) => break,
            Err(_) => assert!(Instant::now() < deadline, "the slot never freed up"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Rate: five new connections a minute from 127.0.0.5, the sixth refused.
    for i in 0..5 {
        request("127.0.0.5", vip).await.unwrap_or_else(|e| panic!("connection {i}: {e}"));
        tokio::time::sleep(Duration::from_millis(20)).await; // let the proxy see the close
    }
    assert!(request("127.0.0.5", vip).await.is_err());
    assert_eq!(rejected(&p, "web", "limit_rate"), 1.0);
    assert_eq!(request("127.0.0.6", vip).await.unwrap(), "b0");
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn no_backend_and_connect_failures_are_refused_and_counted() {
    let dead = greeter("dead");
    dead.stop();
    let (l1, p1) = reserve();
    let (l2, p2) = reserve();
    let yaml = config_yaml(
        &[
            VipSpec { name: "unchecked", port: p1, algorithm: "maglev", backends: &[&dead], health_check: "" },
            VipSpec {
                name: "checked",
                port: p2,
                algorithm: "round_robin",
                backends: &[&dead],
                health_check: "{ type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 1 }",
            },
        ],
        "",
    );
    let mut p = start(&yaml, vec![("unchecked", l1), ("checked", l2)], None).await;
    assert!(request("127.0.0.1", p.vip("unchecked")).await.is_err());
    assert_eq!(rejected(&p, "unchecked", "connect_failed"), 1.0);
    let mut health = p.handle.health();
    tokio::time::timeout(Duration::from_secs(2), health.wait_for(|s| !s.is_up(1, 0))).await.unwrap().unwrap();
    // Let the selection rebuild follow the snapshot.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(request("127.0.0.1", p.vip("checked")).await.is_err());
    assert_eq!(rejected(&p, "checked", "no_backend"), 1.0);
    p.stop();
    p.handle.wait().await.unwrap();
}
