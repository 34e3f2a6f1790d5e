//! `lb-user proxy` graceful shutdown: stop accepting, let open connections
//! finish for drain_timeout, then close the rest.

use std::time::{Duration, Instant};

use crate::proxy_support::*;

#[tokio::test]
async fn open_connections_work_during_the_drain_and_are_closed_after_it() {
    let b = greeter("b0");
    let (l, port) = reserve();
    let yaml = config_yaml(&[VipSpec { name: "web", port, algorithm: "maglev", backends: &[&b], health_check: "" }], "proxy: { drain_timeout: 1s }\n");
    let mut p = start(&yaml, vec![("web", l)], None).await;
    let vip = p.vip("web");
    let (mut conn, _) = open("127.0.0.1", vip).await.unwrap();
    assert_eq!(echo(&mut conn, "before").await.unwrap(), "before");

    p.stop();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(echo(&mut conn, "during").await.unwrap(), "during");
    assert!(request("127.0.0.1", vip).await.is_err(), "new connections are refused while draining");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echo(&mut conn, "still").await.unwrap(), "still");

    tokio::time::timeout(Duration::from_secs(5), p.handle.wait()).await.expect("the proxy stops").unwrap();
    let took = stopped.elapsed();
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(3), "stopped after {took:?}");
    assert!(echo(&mut conn, "after").await.is_err(), "closed at the end of the drain");
}

#[tokio::test]
async fn the_drain_ends_when_the_last_connection_closes() {
    let b = greeter("b0");
    let (l, port) = reserve();
    let yaml = config_yaml(&[VipSpec { name: "web", port, algorithm: "maglev", backends: &[&b], health_check: "" }], "proxy: { drain_timeout: 30s }\n");
    let mut p = start(&yaml, vec![("web", l)], None).await;
    let (mut conn, _) = open("127.0.0.1", p.vip("web")).await.unwrap();
    p.stop();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(echo(&mut conn, "x").await.unwrap(), "x");
    drop(conn);
    tokio::time::timeout(Duration::from_secs(5), p.handle.wait()).await.expect("the proxy stops").unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(3), "{:?}", stopped.elapsed());
}

#[tokio::test]
async fn an_idle_proxy_stops_at_once() {
    let b = greeter("b0");
    let (l, port) = reserve();
    let yaml = config_yaml(&[VipSpec { name: "web", port, algorithm: "maglev", backends: &[&b], health_check: "" }], "");
    let mut p = start(&yaml, vec![("web", l)], None).await;
    assert_eq!(request("127.0.0.1", p.vip("web")).await.unwrap(), "b0");
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.stop();
    tokio::time::timeout(Duration::from_secs(2), p.handle.wait()).await.expect("stops without waiting for the drain").unwrap();
}
