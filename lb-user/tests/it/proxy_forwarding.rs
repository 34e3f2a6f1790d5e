//! `lb-user proxy` forwarding: selection (Maglev as the XDP map builder
//! computes it, maglev_src affinity, round robin), health-driven failover and
//! recovery, UDP sessions, the metrics endpoint.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use crate::proxy_support::*;
use lb_common::userspace::select::Flow;
use lb_user::{config::Config, proxy::balancer::build_selection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn backends(n: usize) -> Vec<Backend> {
    (0..n).map(|i| greeter(&format!("b{i}"))).collect()
}

#[tokio::test]
async fn maglev_reaches_every_backend_and_picks_as_the_data_path() {
    let bs = backends(3);
    let refs: Vec<_> = bs.iter().collect();
    let (l, port) = reserve();
    let yaml = config_yaml(&[VipSpec { name: "web", port, algorithm: "maglev", backends: &refs, health_check: "" }], "");
    let mut p = start(&yaml, vec![("web", l)], None).await;
    let vip = p.vip("web");
    let config = Config::parse(&yaml, "t").unwrap();
    let sel = build_selection(&config.vips[0], &config.maglev, &[0, 1, 2]).unwrap();
    let mut seen = HashMap::new();
    for _ in 0..60 {
        let (conn, name) = open("127.0.0.1", vip).await.unwrap();
        let flow = Flow { src: conn.get_ref().local_addr().unwrap(), dst: vip, protocol: 6 };
        assert_eq!(format!("b{}", sel.pick(&flow).next().unwrap()), name, "{flow:?}");
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn round_robin_cycles_and_maglev_src_pins_a_client() {
    let bs = backends(3);
    let refs: Vec<_> = bs.iter().collect();
    let (l1, p1) = reserve();
    let (l2, p2) = reserve();
    let yaml = config_yaml(
        &[
            VipSpec { name: "rr", port: p1, algorithm: "round_robin", backends: &refs, health_check: "" },
            VipSpec { name: "sticky", port: p2, algorithm: "maglev_src", backends: &refs, health_check: "" },
        ],
        "",
    );
    let mut p = start(&yaml, vec![("rr", l1), ("sticky", l2)], None).await;
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(request("127.0.0.1", p.vip("rr")).await.unwrap());
    }
    assert_eq!(names, ["b0", "b1", "b2", "b0", "b1", "b2"]);

    let sticky = p.vip("sticky");
    let mut pinned = HashSet::new();
    for _ in 0..20 {
        pinned.insert(request("127.0.0.7", sticky).await.unwrap());
    }
    assert_eq!(pinned.len(), 1, "one client IP, one backend: {pinned:?}");
    let mut spread = HashSet::new();
    for i in 1..=40 {
        spread.insert(request(&format!("127.0.1.{i}"), sticky).await.unwrap());
    }
    assert!(spread.len() >= 2, "different clients spread: {spread:?}");
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_stopped_backend_is_avoided_and_comes_back() {
    let mut bs = backends(3);
    let (l, port) = reserve();
    let (interval, rise, fall) = (Duration::from_millis(100), 2u32, 2u32);
    let check = "{ type: tcp, interval: 100ms, timeout: 50ms, rise: 2, fall: 2 }";
    let yaml = {
        let refs: Vec<_> = bs.iter().collect();
        config_yaml(&[VipSpec { name: "web", port, algorithm: "maglev", backends: &refs, health_check: check }], "")
    };
    let mut p = start(&yaml, vec![("web", l)], None).await;
    let vip = p.vip("web");
    let b1 = bs[1].addr.to_string();

    bs[1].stop();
    let stopped = Instant::now();
    // Before the checks notice, a connect to b1 fails over to the next
    // backend: no request fails at any time.
    let down_by = fall * interval + interval + Duration::from_millis(150);
    let mut n = 0;
    while stopped.elapsed() < down_by {
        request("127.0.0.1", vip).await.expect("no request fails while b1 is going down");
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(n > 5);
    assert!(!p.handle.health().borrow().is_up(0, 1), "b1 is down after {down_by:?}");
    for _ in 0..40 {
        assert_ne!(request("127.0.0.1", vip).await.unwrap(), "b1");
    }
    let m = p.metrics();
    assert_eq!(metric(&m, "xdplb_proxy_backend_up", &[("vip", "web"), ("backend", &b1)]), Some(0.0));
    // Each failed attempt on b1 before the checks noticed (if any) is counted.
    assert!(metric(&m, "xdplb_proxy_backend_connect_errors_total", &[("vip", "web"), ("backend", &b1)]).is_some());
    assert_eq!(metric(&m, "xdplb_proxy_rejected_total", &[("vip", "web"), ("reason", "connect_failed")]), Some(0.0));

    bs[1].restart().unwrap();
    let back = Instant::now();
    let limit = rise * interval + interval + Duration::from_millis(200);
    let mut got_b1 = false;
    while back.elapsed() < limit + Duration::from_secs(1) {
        if request("127.0.0.1", vip).await.unwrap() == "b1" {
            got_b1 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = back.elapsed();
    assert!(got_b1, "b1 never got traffic again");
    assert!(took <= limit, "b1 back after {took:?}, limit {limit:?}");
    assert_eq!(metric(&p.metrics(), "xdplb_proxy_backend_up", &[("vip", "web"), ("backend", &b1)]), Some(1.0));
    p.stop();
    p.handle.wait().await.unwrap();
}

/// A UDP backend answering every datagram with `"{name}:{datagram}"`.
async fn udp_backend(name: &'static str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let reply = format!("{name}:{}", String::from_utf8_lossy(&buf[..n]));
            let _ = s.send_to(reply.as_bytes(), from).await;
        }
    });
    (addr, task)
}

async fn udp_ask(s: &tokio::net::UdpSocket, msg: &str) -> String {
    s.send(msg.as_bytes()).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = tokio::time::timeout(IO_TIMEOUT, s.recv(&mut buf)).await.expect("a UDP reply").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn udp_sessions_stick_to_a_backend_until_idle() {
    let (a0, t0) = udp_backend("u0").await;
    let (a1, t1) = udp_backend("u1").await;
    let vip_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = vip_sock.local_addr().unwrap().port();
    let yaml = format!(
        "interfaces: [{{ name: lo }}]\nconntrack: {{ udp_timeout: 1s }}\nvips:\n  - name: dns\n    address: 127.0.0.1\n    port: {port}\n    \
         protocol: udp\n    algorithm: round_robin\n    backends:\n      - {{ address: 127.0.0.1, port: {} }}\n      - {{ address: 127.0.0.1, port: {} }}\n",
        a0.port(),
        a1.port()
    );
    let config = Config::parse(&yaml, "t").unwrap();
    let options = lb_user::proxy::ProxyOptions { udp_sockets: [("dns".to_owned(), vip_sock)].into(), ..Default::default() };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = lb_user::proxy::Proxy::start(config, options, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let vip = handle.local_addr("dns").unwrap();
    assert_eq!(vip.port(), port);

    let c1 = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c1.connect(vip).await.unwrap();
    let c2 = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    c2.connect(vip).await.unwrap();
    // One session per client address: c1 stays on u0, c2 gets u1.
    assert_eq!(udp_ask(&c1, "a").await, "u0:a");
    assert_eq!(udp_ask(&c2, "b").await, "u1:b");
    for i in 0..3 {
        assert_eq!(udp_ask(&c1, &format!("c{i}")).await, format!("u0:c{i}"));
    }
    let m = handle.render_metrics();
    assert_eq!(metric(&m, "xdplb_proxy_active_connections", &[("vip", "dns")]), Some(2.0));
    assert_eq!(metric(&m, "xdplb_proxy_connections_total", &[("vip", "dns"), ("backend", &a0.to_string())]), Some(1.0));
    assert_eq!(metric(&m, "xdplb_proxy_bytes_total", &[("vip", "dns"), ("backend", &a0.to_string()), ("direction", "to_backend")]), Some(7.0));
    // After udp_timeout of silence the session is gone: c1 starts a new one
    // (round robin: the next backend, u0 again after u1).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(metric(&handle.render_metrics(), "xdplb_proxy_active_connections", &[("vip", "dns")]), Some(0.0));
    assert_eq!(udp_ask(&c1, "d").await, "u0:d");
    assert_eq!(udp_ask(&c2, "e").await, "u1:e");
    assert_eq!(metric(&handle.render_metrics(), "xdplb_proxy_connections_total", &[("vip", "dns"), ("backend", &a0.to_string())]), Some(2.0));
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(5), handle.wait()).await.unwrap().unwrap();
    t0.abort();
    t1.abort();
}

#[tokio::test]
async fn tcp_and_udp_vips_on_one_port() {
    let bs = backends(1);
    let (l, port) = reserve();
    let yaml = config_yaml(&[VipSpec { name: "web", port, algorithm: "maglev", backends: &[&bs[0]], health_check: "" }], "")
        + &format!("  - {{ name: dns, address: 127.0.0.1, port: {port}, protocol: udp, backends: [{{ address: 127.0.0.1, port: 53 }}] }}\n");
    let mut p = start(&yaml, vec![("web", l)], None).await;
    let listening = p.handle.listening();
    let names: Vec<_> = listening.iter().map(|(n, a)| (n.as_str(), a.port())).collect();
    assert_eq!(names, [("web", port), ("dns", port)]);
    assert_eq!(request("127.0.0.1", p.vip("web")).await.unwrap(), "b0");
    p.stop();
    p.handle.wait().await.unwrap();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

#[tokio::test]
async fn metrics_endpoint_exports_plausible_values() {
    let bs = backends(2);
    let refs: Vec<_> = bs.iter().collect();
    let (l, port) = reserve();
    let (ml, mport) = reserve();
    let yaml = config_yaml(
        &[VipSpec { name: "web", port, algorithm: "round_robin", backends: &refs, health_check: "" }],
        &format!("metrics: {{ listen: \"127.0.0.1:{mport}\" }}\nallowlist: {{ cidrs: [127.0.0.1/32] }}\n"),
    );
    let mut p = start(&yaml, vec![("web", l)], Some(ml)).await;
    let vip = p.vip("web");
    assert_eq!(p.handle.metrics_addr().unwrap().port(), mport);
    for _ in 0..5 {
        let (mut c, _) = open("127.0.0.1", vip).await.unwrap();
        assert_eq!(echo(&mut c, "hello").await.unwrap(), "hello");
    }
    assert!(request("127.0.0.9", vip).await.is_err());
    let (mut held, _) = open("127.0.0.1", vip).await.unwrap(); // the 6th: b1
    echo(&mut held, "x").await.unwrap();

    let resp = http_get(p.handle.metrics_addr().unwrap(), "/metrics").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    let (k0, k1) = (bs[0].addr.to_string(), bs[1].addr.to_string());
    let get = |name: &str, labels: &[(&str, &str)]| metric(body, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in\n{body}"));
    assert_eq!(get("xdplb_proxy_connections_total", &[("vip", "web"), ("backend", &k0)]), 3.0);
    assert_eq!(get("xdplb_proxy_connections_total", &[("vip", "web"), ("backend", &k1)]), 3.0);
    assert_eq!(get("xdplb_proxy_active_connections", &[("vip", "web")]), 1.0);
    // Per connection: "hello\n" (or "x\n") each way plus the greeting "bN\n".
    assert_eq!(get("xdplb_proxy_bytes_total", &[("vip", "web"), ("backend", &k0), ("direction", "to_backend")]), 18.0);
    assert_eq!(get("xdplb_proxy_bytes_total", &[("vip", "web"), ("backend", &k0), ("direction", "to_client")]), 27.0);
    assert_eq!(get("xdplb_proxy_bytes_total", &[("vip", "web"), ("backend", &k1), ("direction", "to_backend")]), 14.0);
    assert_eq!(get("xdplb_proxy_bytes_total", &[("vip", "web"), ("backend", &k1), ("direction", "to_client")]), 23.0);
    assert_eq!(get("xdplb_proxy_rejected_total", &[("vip", "web"), ("reason", "allowlist")]), 1.0);
    for reason in ["limit_concurrent", "limit_rate", "no_backend", "connect_failed"] {
        assert_eq!(get("xdplb_proxy_rejected_total", &[("vip", "web"), ("reason", reason)]), 0.0);
    }
    assert_eq!(get("xdplb_proxy_backend_up", &[("vip", "web"), ("backend", &k0)]), 1.0);
    assert!(body.contains("# TYPE xdplb_proxy_connections_total counter"));

    assert!(http_get(p.handle.metrics_addr().unwrap(), "/").await.starts_with("HTTP/1.1 404"));
    drop(held);
    // The proxy notices the close: active goes back to 0.
    let deadline = Instant::now() + Duration::from_secs(2);
    while metric(&p.metrics(), "xdplb_proxy_active_connections", &[("vip", "web")]) != Some(0.0) {
        assert!(Instant::now() < deadline, "active connections stay above 0");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.stop();
    p.handle.wait().await.unwrap();
}
